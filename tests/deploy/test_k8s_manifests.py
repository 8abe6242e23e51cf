"""deploy/k8s renders in both overlays, its built-in kinds validate against Kubernetes' schemas, the KEDA
objects use only KEDA's documented fields, and the parts are wired to each other and to the code."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from facequeue.core.settings import Settings
from tests.deploy.conftest import K8S, container, find, kustomize

# The oldest Kubernetes these manifests target (autoscaling/v2 and policy/v1 are GA well before it) and the
# newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
SETTING_NAMES = {f"FACEQUEUE_{name.upper()}" for name in Settings.model_fields}
# keys of the Secret that are not facequeue settings, and what reads them
OTHER_SECRET_KEYS = {
    "KEDA_POSTGRES_CONNECTION": "KEDA's postgresql trigger",
    "POSTGRES_PASSWORD": "dev Postgres",
    "MC_HOST_local": "dev MinIO bucket Job",
}
DEV_ONLY = {("StatefulSet", "postgres"), ("Deployment", "redis"), ("Deployment", "minio"), ("Job", "minio-bucket")}

# KEDA's documented fields, from the keda.sh docs v2.21: reference/scaledobject-spec.md (ScaledObject),
# scalers/postgresql.md (the trigger's metadata and authentication parameters) and concepts/authentication.md
# (TriggerAuthentication). Unknown fields are typos that KEDA would reject or silently ignore.
STRING = {"type": "string"}
INTEGER = {"type": "integer", "minimum": 0}


def _object(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


SCALED_OBJECT_SPEC = _object(
    {
        "scaleTargetRef": _object(
            {"apiVersion": STRING, "kind": STRING, "name": STRING, "envSourceContainerName": STRING}, ("name",)
        ),
        "pollingInterval": INTEGER,
        "cooldownPeriod": INTEGER,
        "initialCooldownPeriod": INTEGER,
        "idleReplicaCount": INTEGER,
        "minReplicaCount": INTEGER,
        "maxReplicaCount": INTEGER,
        "fallback": _object(
            {
                "failureThreshold": INTEGER,
                "replicas": INTEGER,
                "behavior": {
                    "enum": [
                        "static",
                        "currentReplicas",
                        "currentReplicasIfHigher",
                        "currentReplicasIfLower",
                        "scalingModifiers",
                    ]
                },
            },
            ("failureThreshold", "replicas"),
        ),
        "advanced": _object(
            {
                "restoreToOriginalReplicaCount": {"type": "boolean"},
                # behavior is the HPA's own field: checked against Kubernetes' schema below
                "horizontalPodAutoscalerConfig": _object({"name": STRING, "behavior": {"type": "object"}}),
                "scalingModifiers": _object(
                    {
                        "target": STRING,
                        "activationTarget": STRING,
                        "metricType": {"enum": ["AverageValue", "Value"]},
                        "formula": STRING,
                    },
                    ("target", "formula"),
                ),
            }
        ),
        "triggers": {
            "type": "array",
            "minItems": 1,
            "items": _object(
                {
                    "type": STRING,
                    # KEDA's metadata is a map of strings: a YAML number here is refused
                    "metadata": {"type": "object", "additionalProperties": STRING},
                    "name": STRING,
                    "useCachedMetrics": {"type": "boolean"},
                    "authenticationRef": _object(
                        {"name": STRING, "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]}},
                        ("name",),
                    ),
                    "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                },
                ("type", "metadata"),
            ),
        },
    },
    ("scaleTargetRef", "triggers"),
)
TRIGGER_AUTHENTICATION_SPEC = _object(
    {
        "podIdentity": {"type": "object"},
        "secretTargetRef": {
            "type": "array",
            "items": _object({"parameter": STRING, "name": STRING, "key": STRING}, ("parameter", "name", "key")),
        },
        "env": {
            "type": "array",
            "items": _object({"parameter": STRING, "name": STRING, "containerName": STRING}, ("parameter", "name")),
        },
        "hashiCorpVault": {"type": "object"},
        "azureKeyVault": {"type": "object"},
        "awsSecretManager": {"type": "object"},
        "gcpSecretManager": {"type": "object"},
    }
)
POSTGRESQL_METADATA = {
    "connectionFromEnv",
    "host",
    "userName",
    "passwordFromEnv",
    "port",
    "dbName",
    "sslmode",
    "query",
    "targetQueryValue",
    "activationTargetQueryValue",
}
POSTGRESQL_AUTH_PARAMETERS = {"connection", "host", "userName", "password", "port", "dbName", "sslmode"}


def _keda_resource(kind: str, spec_schema: dict) -> dict:
    return _object(
        {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": kind},
            "metadata": {"type": "object"},
            "spec": spec_schema,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


def test_built_in_kinds_validate_strictly(rendered) -> None:
    _, resources = rendered
    built_in = [item for item in resources if item["kind"] not in KEDA_KINDS]
    for version in KUBERNETES_VERSIONS:
        for resource in built_in:
            kubernetes_validate.validate(resource, version, strict=True)
    assert {item["kind"] for item in resources} - {item["kind"] for item in built_in} == KEDA_KINDS


def test_strict_validation_catches_a_misspelt_field(rendered) -> None:
    _, resources = rendered
    worker = copy.deepcopy(find(resources, "Deployment", "facequeue-worker"))
    worker["spec"]["template"]["spec"]["terminationGracePeriod"] = 1000
    with pytest.raises(kubernetes_validate.ValidationError) as refused:
        kubernetes_validate.validate(worker, KUBERNETES_VERSIONS[0], strict=True)
    assert _unlisted_fields(refused.value) == (["spec", "template", "spec"], {"terminationGracePeriod"})


def test_keda_objects_use_only_documented_fields(rendered) -> None:
    _, resources = rendered
    scaled = find(resources, "ScaledObject", "facequeue-worker")
    jsonschema.validate(scaled, _keda_resource("ScaledObject", SCALED_OBJECT_SPEC))
    auth = find(resources, "TriggerAuthentication", "facequeue-postgres")
    jsonschema.validate(auth, _keda_resource("TriggerAuthentication", TRIGGER_AUTHENTICATION_SPEC))

    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    assert set(trigger["metadata"]) <= POSTGRESQL_METADATA
    assert float(trigger["metadata"]["targetQueryValue"]) > 0
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} <= POSTGRESQL_AUTH_PARAMETERS
    # the HPA behaviour KEDA passes on is valid as Kubernetes' own
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    hpa = copy.deepcopy(find(resources, "HorizontalPodAutoscaler", "facequeue-api"))
    hpa["spec"]["behavior"] = behavior
    kubernetes_validate.validate(hpa, KUBERNETES_VERSIONS[0], strict=True)


def test_keda_schema_refuses_what_the_docs_do_not_list(rendered) -> None:
    _, resources = rendered
    scaled = copy.deepcopy(find(resources, "ScaledObject", "facequeue-worker"))
    scaled["spec"]["minReplicas"] = 1  # the HPA's spelling, not KEDA's
    with pytest.raises(jsonschema.ValidationError) as refused:
        jsonschema.validate(scaled, _keda_resource("ScaledObject", SCALED_OBJECT_SPEC))
    assert _unlisted_fields(refused.value) == (["spec"], {"minReplicas"})
    scaled = copy.deepcopy(find(resources, "ScaledObject", "facequeue-worker"))
    scaled["spec"]["triggers"][0]["metadata"]["targetQueryValue"] = 4
    with pytest.raises(jsonschema.ValidationError) as refused:
        jsonschema.validate(scaled, _keda_resource("ScaledObject", SCALED_OBJECT_SPEC))
    assert (refused.value.validator, refused.value.validator_value) == ("type", "string")
    assert list(refused.value.absolute_path) == ["spec", "triggers", 0, "metadata", "targetQueryValue"]


def _unlisted_fields(error: jsonschema.ValidationError) -> tuple[list, set[str]]:
    """Where a schema refused fields it does not list, and which: read from the error's attributes, since its
    message is the validator's wording."""
    assert error.validator == "additionalProperties", error.validator
    return list(error.absolute_path), set(error.instance) - set(error.schema.get("properties", {}))


def test_workers_scale_from_one_with_a_cooldown_and_a_scale_down_window(rendered) -> None:
    overlay, resources = rendered
    spec = find(resources, "ScaledObject", "facequeue-worker")["spec"]
    assert spec["scaleTargetRef"] == {"name": "facequeue-worker"}
    assert spec["minReplicaCount"] == 1
    assert spec["maxReplicaCount"] == {"dev": 2, "prod": 20}[overlay]
    assert spec["cooldownPeriod"] == 300
    assert (
        spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    )
    query = spec["triggers"][0]["metadata"]["query"]
    assert "FROM detect_tasks" in query and "'queued'" in query and "'processing'" in query


def test_every_secret_reference_names_the_generated_secret_and_a_key_it_has(rendered) -> None:
    _, resources = rendered
    secret = find(resources, "Secret", "facequeue-secrets")
    name, keys = secret["metadata"]["name"], set(secret["data"])
    assert name != "facequeue-secrets"  # hashed by the generator, so pods roll when a secret changes
    auth = find(resources, "TriggerAuthentication", "facequeue-postgres")
    assert [(ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]] == [
        (name, "KEDA_POSTGRES_CONNECTION")
    ]
    for resource in resources:
        template = resource.get("spec", {}).get("template", {}).get("spec", {})
        for each in template.get("containers", []):
            for source in each.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] == name
            for variable in each.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == name and ref["key"] in keys, (resource["metadata"]["name"], ref)
    # the app reads settings from it; the rest are named above
    assert {"FACEQUEUE_DATABASE_URL", "FACEQUEUE_BROKER_URL", "FACEQUEUE_SIGNING_SECRET"} <= keys
    assert keys - SETTING_NAMES <= set(OTHER_SECRET_KEYS)


def test_config_names_only_real_settings_and_uses_shared_storage(rendered) -> None:
    overlay, resources = rendered
    config = find(resources, "ConfigMap", "facequeue-config")["data"]
    assert set(config) <= SETTING_NAMES
    assert config["FACEQUEUE_STORAGE_BACKEND"] == "s3"  # pods share no disk
    assert config["FACEQUEUE_PUBLIC_BASE_URL"].startswith({"dev": "http://", "prod": "https://"}[overlay])
    Settings(**{name.removeprefix("FACEQUEUE_").lower(): value for name, value in config.items()})


def test_worker_outlasts_its_longest_task_and_requests_a_core_per_pool_process(rendered) -> None:
    _, resources = rendered
    worker = find(resources, "Deployment", "facequeue-worker")
    pod = worker["spec"]["template"]["spec"]
    defaults = Settings()
    assert pod["terminationGracePeriodSeconds"] > defaults.video_time_limit > defaults.video_soft_time_limit
    worker_container = container(worker)
    assert worker_container["command"] == ["facequeue", "worker"]  # exec form: Celery is PID 1
    pre_stop = worker_container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[:2] == ["sh", "-c"] and "kill -TERM 1" in pre_stop[2] and "kill -0 1" in pre_stop[2]
    concurrency = find(resources, "ConfigMap", "facequeue-config")["data"]["FACEQUEUE_WORKER_CONCURRENCY"]
    resources_ = worker_container["resources"]
    assert resources_["requests"]["cpu"] == resources_["limits"]["cpu"] == concurrency
    assert find(resources, "PodDisruptionBudget", "facequeue-worker")["spec"]["maxUnavailable"] == 1


def test_api_probes_drains_and_scales_on_cpu(rendered) -> None:
    _, resources = rendered
    api = find(resources, "Deployment", "facequeue-api")
    api_container = container(api)
    assert api_container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert api_container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > Settings().sync_timeout
    hpa = find(resources, "HorizontalPodAutoscaler", "facequeue-api")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "facequeue-api"
    assert [metric["resource"]["name"] for metric in hpa["metrics"]] == ["cpu"]
    assert "requests" in api_container["resources"] and "limits" in api_container["resources"]
    service = find(resources, "Service", "facequeue-api")
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]


def test_migrations_run_as_a_job_of_the_same_image(rendered) -> None:
    _, resources = rendered
    job = find(resources, "Job", "facequeue-migrate")
    assert container(job)["command"] == ["facequeue", "migrate"]
    assert container(job)["image"] == container(find(resources, "Deployment", "facequeue-api"))["image"]


def test_databases_and_object_store_run_in_the_cluster_only_in_dev(rendered) -> None:
    overlay, resources = rendered
    present = {(item["kind"], item["metadata"]["name"]) for item in resources}
    assert (DEV_ONLY <= present) if overlay == "dev" else not (DEV_ONLY & present)
    namespaces = {item["metadata"].get("namespace") for item in resources if item["kind"] != "Namespace"}
    assert namespaces == {{"dev": "facequeue-dev", "prod": "facequeue"}[overlay]}
    images = {container(item)["image"] for item in resources if item["kind"] in ("Deployment", "Job")}
    facequeue_images = {image for image in images if "facequeue" in image}
    assert facequeue_images == {{"dev": "facequeue:dev", "prod": "registry.example.com/facequeue:0.1.0"}[overlay]}


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_an_overlay_without_its_secrets_file_does_not_render(overlay: str, tmp_path: Path) -> None:
    shutil.copytree(K8S, tmp_path / "k8s", ignore=shutil.ignore_patterns("secrets.env"))
    result = kustomize(tmp_path / "k8s" / "overlays" / overlay)
    assert result.returncode != 0 and "secrets.env" in result.stderr
