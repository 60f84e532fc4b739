"""`python -m mlflow_gateway_tools.launcher`"""

import sys

from mlflow_gateway_tools.launcher.cli import main

sys.exit(main())
