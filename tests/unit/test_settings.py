import pytest

from core.settings import SettingsError, load_settings


def test_env_beats_secrets_file():
    s = load_settings(env={"DATABASE_URL": "sqlite:///x.db"},
                      secrets={"memberdesk": {"database_url": "sqlite:///y.db", "encryption_keys": ["a", "b"]}})
    assert s.database_url == "sqlite:///x.db"
    assert s.encryption_keys == ("a", "b")


def test_postgres_url_gets_psycopg3_driver():
    assert load_settings(env={"DATABASE_URL": "postgresql://u@h/db"}, secrets={}).database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL must start with"),
        ({"STRIPE_API_BASE": "ftp://x"}, "STRIPE_API_BASE must be"),
        ({"MEMBERDESK_SESSION_IDLE_MINUTES": "soon"}, "whole number of minutes"),
    ],
)
def test_bad_settings_are_one_sentence(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env=env, secrets={})


def test_short_cookie_key_refused():
    with pytest.raises(SettingsError, match="48 characters"):
        load_settings(env={"MEMBERDESK_COOKIE_KEY": "short"}, secrets={}).require_cookie_key()


def test_repr_hides_password():
    s = load_settings(env={"DATABASE_URL": "postgresql://user:hunter2@db/x"}, secrets={})
    assert "hunter2" not in repr(s)


@pytest.mark.parametrize(("base", "sandbox"), [
    ("http://127.0.0.1:12111", True), ("http://localhost:12111", True), ("", False),
    ("https://api.stripe.com", False), ("http://localhost.example.com", False), ("http://127.0.0.1.example.com", False),
])
def test_only_a_local_address_counts_as_the_sandbox(base, sandbox):
    # `python -m cli run` loads the demo world beside the sandbox only: a look-alike host is not it.
    assert load_settings(env={"STRIPE_API_BASE": base}, secrets={}).uses_sandbox is sandbox


def test_the_local_alert_webhook_receiver_is_off_by_default_and_names_one_server():
    assert load_settings(env={}, secrets={}).alert_webhook_local_receiver == ""
    env = {"MEMBERDESK_ALERT_WEBHOOK_LOCAL_RECEIVER": "http://127.0.0.1:8765/"}
    assert load_settings(env=env, secrets={}).alert_webhook_local_receiver == "http://127.0.0.1:8765"
    secrets = {"notifications": {"webhook_local_receiver": "http://localhost:9000"}}
    assert load_settings(env={}, secrets=secrets).alert_webhook_local_receiver == "http://localhost:9000"
    for bad in ("http://127.0.0.1", "http://127.0.0.1:8765/hooks", "127.0.0.1:8765", "ftp://127.0.0.1:21"):
        with pytest.raises(SettingsError, match="must be one server such as http://127.0.0.1:8765"):
            load_settings(env={"MEMBERDESK_ALERT_WEBHOOK_LOCAL_RECEIVER": bad}, secrets={})
