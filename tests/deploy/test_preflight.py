"""Bad settings stop the deploy before anything changes; the message names the value and the fix.

Runs the three gateway roles' preflight entry points (what deploy.yml runs on every host
first) on the controller with real ansible-playbook; the upstream key check talks to a real
fake-openai. The key never appears in the output, whatever is wrong with it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import LAB_KEY, FakeOpenAI
from playbook_runner import run_local_playbook

ROOT = Path(__file__).resolve().parents[2]
PLAY = Path(__file__).with_name("preflight.yml")
UNSET = object()  # a setting left to the role's default


def run_preflight(
    settings: dict[str, Any], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    variables = {
        name: value
        for name, value in {
            "gateway_openai_api_key": LAB_KEY,
            "gateway_openai_api_key_check": False,
            **settings,
        }.items()
        if value is not UNSET
    }
    environment = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    return run_local_playbook(PLAY, variables, env={**environment, **(env or {})})


def output(result: subprocess.CompletedProcess) -> str:
    return " ".join((result.stdout + result.stderr).split())


def test_good_settings_pass() -> None:
    result = run_preflight({})
    assert result.returncode == 0, output(result)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"gateway_replicas": 0}, "gateway_replicas is 0: prod mode needs at least one replica"),
        ({"gateway_replicas": -2}, "gateway_replicas is -2"),
        ({"gateway_workers": 0}, "gateway_workers is 0"),
        (
            {"gateway_mode": "production"},
            "gateway_mode is 'production'. Fix: set gateway_mode to dev",
        ),
        (
            {
                "gateway_endpoints": [
                    {
                        "name": "chat",
                        "endpoint_type": "llm/v1/chat",
                        "model": "gpt-4o-mini",
                        "api_base": "http://x",
                    }
                ]
            },
            "endpoint #1 'chat': unknown field 'api_base'",
        ),
        (
            {
                "gateway_endpoints": [
                    {"name": "chat", "endpoint_type": "llm/v1/chatt", "model": "gpt-4o-mini"}
                ]
            },
            "endpoint #1 'chat': field endpoint_type must be one of llm/v1/chat",
        ),
        (
            {"gateway_endpoints": [{"name": "chat", "endpoint_type": "llm/v1/chat"}]},
            "endpoint #1 'chat': field model must name the OpenAI model",
        ),
        (
            {
                "gateway_endpoints": [
                    {"name": "chat", "endpoint_type": "llm/v1/chat", "model": "gpt-4o-mini"},
                    {"name": "chat", "endpoint_type": "llm/v1/embeddings", "model": "e"},
                ]
            },
            "endpoint name 'chat' is used more than once",
        ),
        (
            {
                "gateway_endpoints": [
                    {"name": "emb", "endpoint_type": "llm/v1/embeddings", "model": "e"},
                ]
            },
            "no endpoint has endpoint_type llm/v1/chat",
        ),
        (
            {
                "gateway_endpoints": [
                    {
                        "name": "chat",
                        "endpoint_type": "llm/v1/chat",
                        "model": "m",
                        "limit": {"calls": 0},
                    }
                ]
            },
            "endpoint #1 'chat': field limit must be",
        ),
        ({"gateway_upstream_base": "https://api.openai.com/v1"}, "gateway_upstream_base is"),
        (
            {"gateway_proxy_client_tokens": {"alice": "short"}},
            "The token of client(s) alice is not 16-256 characters",
        ),
        (
            {"gateway_proxy_client_tokens": {"bob smith": "0123456789abcdef0123"}},
            "Bad client names: bob smith",
        ),
        (
            {"gateway_image_extra_ca_files": ["/nonexistent/corp-ca.crt"]},
            "/nonexistent/corp-ca.crt, which does not exist on the controller",
        ),
        ({"gateway_image_source": "pull"}, "gateway_image_registry is empty"),
    ],
)
def test_a_bad_setting_stops_with_its_name_and_the_fix(
    settings: dict[str, Any], expected: str
) -> None:
    result = run_preflight(settings)
    assert result.returncode != 0
    assert expected in output(result), output(result)


@pytest.mark.parametrize(
    "key", ["your_openai_api_key_here", "sk-your-actual-key-here", "sk-xxxxxxxxxxxx"]
)
def test_a_placeholder_key_stops(key: str) -> None:
    result = run_preflight({"gateway_openai_api_key": key})
    assert result.returncode != 0
    assert "The OpenAI key is still a placeholder" in output(result), output(result)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ('"sk-lab-fake-key-1"', "The OpenAI key contains quotes"),
        ("sk-lab-fake-key-1 ", "The OpenAI key contains spaces"),
        ("sk-lab-fake-key-1\n", "The OpenAI key contains a newline"),
        ("", "No OpenAI key is set"),
    ],
)
def test_a_bad_key_stops_without_showing_the_key(key: str, expected: str) -> None:
    result = run_preflight({"gateway_openai_api_key": key})
    assert result.returncode != 0
    text = output(result)
    assert expected in text, text
    assert "Fix: put the bare key" in text
    assert LAB_KEY not in result.stdout + result.stderr


def test_the_key_can_come_from_the_environment() -> None:
    result = run_preflight({"gateway_openai_api_key": UNSET}, env={"OPENAI_API_KEY": LAB_KEY})
    assert result.returncode == 0, output(result)


def test_the_upstream_is_asked_whether_it_accepts_the_key(fake: FakeOpenAI) -> None:
    accepted = run_preflight(
        {"gateway_openai_api_key_check": True, "gateway_upstream_base": fake.url}
    )
    assert accepted.returncode == 0, output(accepted)
    refused = run_preflight(
        {
            "gateway_openai_api_key_check": True,
            "gateway_upstream_base": fake.url,
            "gateway_openai_api_key": "sk-lab-fake-key-9",
        }
    )
    assert refused.returncode != 0
    assert f"The upstream {fake.url} refused the OpenAI key (HTTP 401)" in output(refused)
    assert "sk-lab-fake-key-9" not in refused.stdout + refused.stderr


def test_an_unreachable_upstream_is_named() -> None:
    result = run_preflight(
        {"gateway_openai_api_key_check": True, "gateway_upstream_base": "http://127.0.0.1:9"}
    )
    assert result.returncode != 0
    assert "The host cannot reach http://127.0.0.1:9/v1/models" in output(result)
