"""`python -m mlflow_gateway_tools.evaluate`"""

import sys

from mlflow_gateway_tools.evaluate.cli import main

sys.exit(main())
