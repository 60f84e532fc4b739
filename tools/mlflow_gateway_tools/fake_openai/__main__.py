"""`python -m mlflow_gateway_tools.fake_openai`"""

import sys

from mlflow_gateway_tools.fake_openai.cli import main

sys.exit(main())
