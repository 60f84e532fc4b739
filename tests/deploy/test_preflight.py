"""Bad settings stop the deploy before anything changes; the message names the value and the fix.

Runs the three gateway roles' preflight entry points (what deploy.yml runs on every host
first) on the controller with real ansible-playbook; the upstream key check talks to a real
fake-openai. The key never appears in the output, whatever is wrong with it.
"""

from __future__ import annotations

import json
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
TOKENS = {"tests": "test-fake-client-token-0001"}  # a deploy without tokens stops (see below)


def run_preflight(
    settings: dict[str, Any], env: dict[str, str] | None = None, options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    variables = {
        name: value
        for name, value in {
            "gateway_openai_api_key": LAB_KEY,
            "gateway_openai_api_key_check": False,
            "gateway_proxy_client_tokens": TOKENS,
            **settings,
        }.items()
        if value is not UNSET
    }
    environment = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    return run_local_playbook(PLAY, variables, env={**environment, **(env or {})}, options=options)


def output(result: subprocess.CompletedProcess) -> str:
    return " ".join((result.stdout + result.stderr).split())


def test_good_settings_pass() -> None:
    result = run_preflight({})
    assert result.returncode == 0, output(result)
    assert "has no price for model" not in output(result), "the default models are priced"


def test_a_model_the_price_source_does_not_know_warns_and_goes_on() -> None:
    endpoints = [
        {"name": "chat", "endpoint_type": "llm/v1/chat", "model": "gpt-4.1-mni"},
        {"name": "chat2", "endpoint_type": "llm/v1/chat", "model": "gpt-4.1-mni"},
        {"name": "local", "endpoint_type": "llm/v1/chat", "model": "my-local-llama"},
        {"name": "emb", "endpoint_type": "llm/v1/embeddings", "model": "text-embedding-3-small"},
    ]
    result = run_preflight(
        {"gateway_endpoints": endpoints}, env={"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}
    )
    assert result.returncode == 0, output(result)
    # The message itself, from the json record: the yaml callback folds long lines.
    _, warned = task_result(result, "Warn about endpoint models the price source does not know")
    message = warned["msg"]
    assert message.startswith("WARNING: genai-prices "), message
    assert (
        "has no price for model gpt-4.1-mni (endpoint(s) chat, chat2): analyze-costs and "
        "evaluate-gateway will report its requests as unpriced. Closest known names: "
        "gpt-4.1-mini" in message
    ), message
    assert "has no price for model my-local-llama (endpoint(s) local)" in message, message
    assert "No close known name." in message, message
    assert "text-embedding-3-small" not in message, message


def json_record(result: subprocess.CompletedProcess) -> dict[str, Any]:
    """What the json stdout callback recorded of the run."""
    # The timer callbacks print their lines around the json record: decode from its first line.
    start = result.stdout.find("\n{\n") + 1
    record, _ = json.JSONDecoder().raw_decode(result.stdout, start)
    return record


def task_result(result: subprocess.CompletedProcess, name_part: str) -> tuple[str, dict[str, Any]]:
    """The name and localhost result of the first task whose name contains NAME_PART."""
    for play in json_record(result)["plays"]:
        for task in play["tasks"]:
            if name_part in task["task"]["name"] and "localhost" in task["hosts"]:
                return task["task"]["name"], task["hosts"]["localhost"]
    raise AssertionError(f"no task named ...{name_part}...: {result.stdout[-2000:]}")


def failed_task(result: subprocess.CompletedProcess) -> tuple[str, dict[str, Any]]:
    """The name and localhost result of the task that failed, from the json callback's record."""
    for play in json_record(result)["plays"]:
        for task in play["tasks"]:
            outcome = task["hosts"].get("localhost", {})
            if outcome.get("failed"):
                return task["task"]["name"], outcome
    raise AssertionError(f"no task failed: {result.stdout[-2000:]}")


@pytest.mark.parametrize(
    ("settings", "role", "expected"),
    [
        (
            {"gateway_replicas": "abc"},
            "gateway",
            "argument 'gateway_replicas' is of type str and we were unable to convert to int",
        ),
        (
            {"gateway_endpoints": "chat"},
            "gateway",
            "option 'gateway_endpoints' is of type str and we were unable to convert to dict",
        ),
        (
            {"gateway_usage_min_free_mb": "lots"},
            "gateway",
            "argument 'gateway_usage_min_free_mb' is of type str and we were unable to convert",
        ),
        (
            {"gateway_proxy_client_tokens": ["a-token"]},
            "gateway_proxy",
            "argument 'gateway_proxy_client_tokens' is of type list and we were unable to convert",
        ),
        (
            {"gateway_proxy_allow_anonymous": "maybe"},
            "gateway_proxy",
            "argument 'gateway_proxy_allow_anonymous' is of type str and we were unable to convert",
        ),
    ],
    ids=["replicas-abc", "endpoints-string", "min-free-lots", "tokens-list", "anonymous-maybe"],
)
def test_a_wrong_type_is_refused_by_the_argument_spec_first(
    settings: dict[str, Any], role: str, expected: str
) -> None:
    """`tasks_from: preflight` (no .yml) makes Ansible validate the entry point's spec, and
    that stops the run before the role's own checks (and so before any later play)."""
    result = run_preflight(settings, env={"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"})
    assert result.returncode != 0
    name, outcome = failed_task(result)
    assert name.startswith(f"{role} : Validating arguments against arg spec 'preflight'"), name
    assert outcome["validate_args_context"]["name"] == role, outcome["validate_args_context"]
    assert outcome["validate_args_context"]["argument_spec_name"] == "preflight"
    assert any(expected in error for error in outcome["argument_errors"]), outcome[
        "argument_errors"
    ]
    assert "test-fake-client-token-000" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"gateway_replicas": 0}, "gateway_replicas is 0: prod mode needs at least one replica"),
        ({"gateway_replicas": -2}, "gateway_replicas is -2"),
        ({"gateway_workers": 0}, "gateway_workers is 0"),
        # The role's argument spec refuses an unknown mode first (its choices).
        (
            {"gateway_mode": "production"},
            "value of gateway_mode must be one of: dev, prod, got: production",
        ),
        (
            {
                "gateway_endpoints": [
                    {
                        "name": "chat",
                        "endpoint_type": "llm/v1/chat",
                        "model": "gpt-4.1-mini",
                        "api_base": "http://x",
                    }
                ]
            },
            "endpoint #1 'chat': unknown field 'api_base'",
        ),
        (
            {
                "gateway_endpoints": [
                    {"name": "chat", "endpoint_type": "llm/v1/chatt", "model": "gpt-4.1-mini"}
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
                    {"name": "chat", "endpoint_type": "llm/v1/chat", "model": "gpt-4.1-mini"},
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


# The fake upstreams of these tests speak plain http on 127.0.0.1.
PLAIN_HTTP = {"gateway_upstream_allow_http": True}


def test_the_upstream_is_asked_whether_it_accepts_the_key(fake: FakeOpenAI) -> None:
    accepted = run_preflight(
        {"gateway_openai_api_key_check": True, "gateway_upstream_base": fake.url, **PLAIN_HTTP}
    )
    assert accepted.returncode == 0, output(accepted)
    refused = run_preflight(
        {
            "gateway_openai_api_key_check": True,
            "gateway_upstream_base": fake.url,
            "gateway_openai_api_key": "sk-lab-fake-key-9",
            **PLAIN_HTTP,
        }
    )
    assert refused.returncode != 0
    assert f"The upstream {fake.url} refused the OpenAI key (HTTP 401)" in output(refused)
    assert "sk-lab-fake-key-9" not in refused.stdout + refused.stderr


def test_an_unreachable_upstream_is_named() -> None:
    result = run_preflight(
        {
            "gateway_openai_api_key_check": True,
            "gateway_upstream_base": "http://127.0.0.1:9",
            **PLAIN_HTTP,
        }
    )
    assert result.returncode != 0
    assert "The host cannot reach http://127.0.0.1:9/v1/models" in output(result)


def test_an_http_upstream_is_refused_unless_allowed_on_purpose() -> None:
    result = run_preflight({"gateway_upstream_base": "http://upstream.example.test"})
    assert result.returncode != 0
    text = output(result)
    assert "plain http would send the OpenAI key unencrypted" in text, text
    assert "gateway_upstream_allow_http: true" in text


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"gateway_usage_dir": "relative/usage"}, "gateway_usage_dir is 'relative/usage'"),
        ({"gateway_usage_retention_days": -1}, "gateway_usage_retention_days is -1"),
        ({"gateway_usage_min_free_mb": -5}, "gateway_usage_min_free_mb is -5"),
    ],
)
def test_bad_ledger_settings_stop_naming_the_value(settings: dict, expected: str) -> None:
    result = run_preflight(settings)
    assert result.returncode != 0
    assert expected in output(result)


def test_a_host_user_with_the_gateways_user_id_stops_the_deploy() -> None:
    result = run_preflight({"gateway_container_uid": 0})
    assert result.returncode != 0
    text = output(result)
    assert "The gateway's user id 0 belongs to the host user 'root'" in text, text
    assert "Fix: set gateway_image_gateway_uid" in text


# --- closed by default: client tokens, the anonymous opt-in, dev mode, per-client limits ------


def recap_changed(result: subprocess.CompletedProcess) -> int:
    """The `changed=` count of the play recap (the preflight only reads: always 0)."""
    counts = [
        int(part.split("=")[1]) for part in result.stdout.split() if part.startswith("changed=")
    ]
    assert counts, result.stdout[-2000:]
    return sum(counts)


def test_prod_without_tokens_stops_naming_how_to_make_them() -> None:
    result = run_preflight({"gateway_proxy_client_tokens": UNSET})
    assert result.returncode != 0
    text = output(result)
    assert (
        "No client token is set, so anyone who reaches 0.0.0.0:5000 would spend the OpenAI key"
        in text
    ), text
    for fix in (
        "openssl rand -hex 24",
        "inventory/<env>/group_vars/gateway_hosts/vault.yml",
        "vault_gateway_proxy_client_tokens",
        "set gateway_proxy_allow_anonymous: true",
    ):
        assert fix in text, (fix, text)
    assert recap_changed(result) == 0


def test_prod_with_tokens_from_the_vault_variable_passes() -> None:
    result = run_preflight(
        {"gateway_proxy_client_tokens": UNSET, "vault_gateway_proxy_client_tokens": TOKENS}
    )
    assert result.returncode == 0, output(result)


def test_prod_without_tokens_passes_only_when_anonymous_on_purpose() -> None:
    result = run_preflight(
        {"gateway_proxy_client_tokens": {}, "gateway_proxy_allow_anonymous": True}
    )
    assert result.returncode == 0, output(result)
    refused = run_preflight(
        {"gateway_proxy_client_tokens": {}, "gateway_proxy_allow_anonymous": False}
    )
    assert refused.returncode != 0
    assert "No client token is set" in output(refused)


def test_dev_mode_refuses_tokens_it_cannot_enforce() -> None:
    result = run_preflight({"gateway_mode": "dev", "gateway_proxy_allow_anonymous": True})
    assert result.returncode != 0
    text = output(result)
    assert (
        "gateway_mode dev publishes the gateway itself on port 5000, with no nginx in front" in text
    ), text
    assert "Fix: use gateway_mode prod (e.g. with gateway_replicas: 1)" in text
    assert TOKENS["tests"] not in result.stdout + result.stderr
    assert recap_changed(result) == 0


def test_dev_mode_is_anonymous_only_on_purpose() -> None:
    refused = run_preflight({"gateway_mode": "dev", "gateway_proxy_client_tokens": {}})
    assert refused.returncode != 0
    assert "(dev mode has no authentication at all)" in output(refused), output(refused)
    allowed = run_preflight(
        {
            "gateway_mode": "dev",
            "gateway_proxy_client_tokens": {},
            "gateway_proxy_allow_anonymous": True,
        }
    )
    assert allowed.returncode == 0, output(allowed)


def test_limits_of_known_clients_pass() -> None:
    result = run_preflight(
        {
            "gateway_proxy_client_tokens": {**TOKENS, "batch": "test-fake-client-token-0002"},
            "gateway_proxy_client_limit_default": {"rate": "600r/m", "burst": 0, "in_flight": 1},
            "gateway_proxy_client_limits": {"batch": {"in_flight": 4}},
        }
    )
    assert result.returncode == 0, output(result)


DEFAULT_LIMIT = {"rate": "1000r/s", "burst": 200, "in_flight": 32}


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"gateway_proxy_client_limits": {"tests": {"rate": "10/s"}}},
            "gateway_proxy_client_limits.tests: rate '10/s' is not requests per second or minute",
        ),
        (
            {"gateway_proxy_client_limits": {"tests": {"rate": "1.5r/s"}}},
            "rate '1.5r/s' is not requests per second or minute like 10r/s or 600r/m",
        ),
        (
            {"gateway_proxy_client_limits": {"tests": {"burst": -1}}},
            "gateway_proxy_client_limits.tests: burst '-1' is not a whole number of at least 0",
        ),
        (
            {"gateway_proxy_client_limits": {"tests": {"in_flight": 0}}},
            "gateway_proxy_client_limits.tests: in_flight '0' is not a whole number of at least 1",
        ),
        (
            {"gateway_proxy_client_limits": {"tests": {"rps": 5}}},
            "gateway_proxy_client_limits.tests: unknown field 'rps' (allowed: rate, burst,",
        ),
        (
            {"gateway_proxy_client_limits": {"nobody": {"rate": "1r/s"}}},
            "gateway_proxy_client_limits.nobody: no client nobody in gateway_proxy_client_tokens"
            " (known: tests)",
        ),
        (
            {"gateway_proxy_client_limits": {"tests": "10r/s"}},
            "gateway_proxy_client_limits.tests must be a mapping of rate, burst, in_flight",
        ),
        (
            {"gateway_proxy_client_limit_default": {"rate": "1000r/s", "burst": 200}},
            "gateway_proxy_client_limit_default: field in_flight is missing",
        ),
        (
            {"gateway_proxy_client_limit_default": {**DEFAULT_LIMIT, "rate": "fast"}},
            "gateway_proxy_client_limit_default: rate 'fast' is not requests per second or minute",
        ),
        (
            # A yes the spec accepts as a bool, but a template would see the string 'yes'.
            {"gateway_proxy_allow_anonymous": "yes"},
            "gateway_proxy_allow_anonymous is 'yes'",
        ),
        (
            {
                "gateway_proxy_client_tokens": {
                    "Alice": "test-fake-client-token-0003",
                    "alice": "test-fake-client-token-0004",
                }
            },
            "Client names Alice, alice differ only in letter case",
        ),
    ],
)
def test_a_bad_limit_or_client_setting_stops_naming_it(
    settings: dict[str, Any], expected: str
) -> None:
    result = run_preflight(settings)
    assert result.returncode != 0
    text = output(result)
    assert expected in text, text
    assert "test-fake-client-token-000" not in result.stdout + result.stderr
    assert recap_changed(result) == 0


PEER_SECRET = "0123456789abcdef0123456789abcdef"  # a stand-in, the shape openssl rand -hex 16 gives


def run_two_host_preflight(
    tmp_path: Path, secrets: dict[str, str | None]
) -> subprocess.CompletedProcess:
    """The preflight on two local "hosts" of gateway_hosts (so each has the other as peer),
    with each host's gateway_peer_secret from the inventory (None: not set)."""
    hosts = {
        host: {
            "ansible_connection": "local",
            "gateway_advertise_address": address,
            **({"gateway_peer_secret": secret} if secret is not None else {}),
        }
        for (host, secret), address in zip(
            secrets.items(), ("192.0.2.10", "192.0.2.11"), strict=True
        )
    }
    inventory = tmp_path / "hosts.json"
    inventory.write_text(json.dumps({"gateway_hosts": {"hosts": hosts}}))
    return run_preflight({"preflight_hosts": "gateway_hosts"}, options=("-i", str(inventory)))


def test_hosts_that_share_one_peer_secret_pass(tmp_path: Path) -> None:
    result = run_two_host_preflight(tmp_path, {"gw-a": PEER_SECRET, "gw-b": PEER_SECRET})
    assert result.returncode == 0, output(result)
    assert PEER_SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("secrets", "expected"),
    [
        (
            {"gw-a": None, "gw-b": None},
            "gateway_peer_secret is empty, but gw-a forwards requests to its peers gw-b.",
        ),
        (
            {"gw-a": "short0secret", "gw-b": "short0secret"},
            "gateway_peer_secret is not 32 or more letters and digits, but gw-a forwards",
        ),
        (
            {"gw-a": PEER_SECRET, "gw-b": PEER_SECRET.upper()},
            "gateway_peer_secret differs on gw-b from gw-a's: every host of gateway_peer_group"
            " must have the same one.",
        ),
    ],
    ids=["none", "short", "different"],
)
def test_hosts_without_one_usable_peer_secret_stop_naming_the_fix(
    tmp_path: Path, secrets: dict[str, str | None], expected: str
) -> None:
    result = run_two_host_preflight(tmp_path, secrets)
    assert result.returncode != 0
    text = output(result)
    assert expected in text, text
    assert "openssl rand -hex 32" in text
    for secret in secrets.values():
        if secret:
            assert secret not in result.stdout + result.stderr
    assert recap_changed(result) == 0
