"""`python -m mlflow_gateway_tools.costs`"""

import sys

from mlflow_gateway_tools.costs.cli import main

sys.exit(main())
