"""Before sending load: is the gateway up, does it want a token, which endpoints does it have."""

from __future__ import annotations

import requests

from mlflow_gateway_tools.cli_support import CommandError
from mlflow_gateway_tools.usage import error_text_from_body

HEALTH_TIMEOUT_S = 5
ENDPOINT_LIST_PATH = "/api/2.0/endpoints/"
MAX_ENDPOINT_PAGES = 50


def _auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def check_health(base_url: str, token: str | None) -> None:
    """Raise CommandError naming the URL and the fix unless GET /health answers 200."""
    url = f"{base_url}/health"
    try:
        response = requests.get(url, headers=_auth_headers(token), timeout=HEALTH_TIMEOUT_S)
    except requests.ConnectionError:
        raise CommandError(
            f"the gateway is down or unreachable: nothing answers at {url}. Start it "
            "(make lab-up, or docker compose up -d on the host) or point --url / GATEWAY_URL "
            "at the right address"
        ) from None
    except requests.Timeout:
        raise CommandError(
            f"the gateway at {url} did not answer within {HEALTH_TIMEOUT_S}s; check that it "
            "is running and not overloaded (docker ps, docker logs)"
        ) from None
    except requests.RequestException as error:
        raise CommandError(f"cannot check {url}: {error}; check --url / GATEWAY_URL") from None
    if response.status_code in (401, 403):
        hint = "the token was refused" if token else "pass --token or set GATEWAY_TOKEN"
        raise CommandError(f"the gateway at {url} answered {response.status_code}: {hint}")
    if response.status_code != 200:
        raise CommandError(
            f"the gateway at {url} is unhealthy: HTTP {response.status_code}: "
            f"{error_text_from_body(response.content)}; see its logs (docker logs)"
        )


def list_endpoints(base_url: str, token: str | None) -> set[str] | None:
    """Endpoint names the gateway serves, or None when it will not say."""
    names: set[str] = set()
    page_token: str | None = None
    for _ in range(MAX_ENDPOINT_PAGES):
        params = {"page_token": page_token} if page_token else None
        try:
            response = requests.get(
                base_url + ENDPOINT_LIST_PATH,
                params=params,
                headers=_auth_headers(token),
                timeout=HEALTH_TIMEOUT_S,
            )
            page = response.json() if response.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return None
        if not isinstance(page, dict) or not isinstance(page.get("endpoints"), list):
            return None
        names.update(e["name"] for e in page["endpoints"] if isinstance(e, dict) and "name" in e)
        page_token = page.get("next_page_token")
        if not page_token:
            return names
    return names
