"""Offline checks of the cluster deployment files in cluster/.

Nothing here launches anything or starts Ray: the Ray cluster launcher configs (cluster/*-gpu.yaml)
are validated against the JSON schema that the installed Ray ships (ray/autoscaler/ray-schema.json,
the one `ray up` itself validates against) and run through Ray's own offline config preparation;
the KubeRay RayJob manifest and cluster/Dockerfile are checked field by field. On top of the
schemas, the project's own promises are asserted: no trials on the head, a GPU worker type, images
pinned to the installed Ray, the project shipped to and installed on every node, storage credentials.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.resources
import json
import os
import re
from pathlib import Path

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
RAY_VERSION = importlib.metadata.version("ray")
VM_CONFIGS = sorted(CLUSTER.glob("*-gpu.yaml"))
ONPREM = CLUSTER / "onprem.yaml"
LAUNCHER_CONFIGS = VM_CONFIGS + [ONPREM]  # everything `ray up` takes
RAYJOB = CLUSTER / "kuberay-rayjob.yaml"
DOCKERFILE = CLUSTER / "Dockerfile"
README = CLUSTER / "README.md"


# --------------------------------------------------------------------------- helpers


def _load(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict), f"{path.name}: top level is not a mapping"
    return data


@pytest.fixture(scope="module")
def ray_schema() -> dict:
    """The cluster-config schema shipped inside the installed ray package."""
    resource = importlib.resources.files("ray.autoscaler") / "ray-schema.json"
    assert resource.is_file(), f"ray {RAY_VERSION} no longer ships ray/autoscaler/ray-schema.json"
    schema = json.loads(resource.read_text(encoding="utf-8"))
    jsonschema.validators.validator_for(schema).check_schema(schema)
    return schema


def _validate(config: dict, schema: dict) -> None:
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls(schema).validate(config)


def _ids(paths):
    return [p.name for p in paths]


def _head(cfg: dict) -> dict:
    return cfg["available_node_types"][cfg["head_node_type"]]


def _workers(cfg: dict) -> dict:
    return {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}


def _gpu_workers(cfg: dict) -> dict:
    return {k: v for k, v in _workers(cfg).items() if v.get("resources", {}).get("GPU", 0) >= 1}


def _image_tag(image: str) -> str:
    assert ":" in image.rsplit("/", 1)[-1], f"image {image!r} has no tag (would float to :latest)"
    return image.rsplit(":", 1)[1]


def _project_mount(cfg: dict) -> str:
    """Remote path of the file mount whose local source is the repository root."""
    for remote, local in cfg.get("file_mounts", {}).items():
        if (REPO / os.path.expanduser(local)).resolve() == REPO:
            return remote
    raise AssertionError("no file_mounts entry ships the repository root ('.')")


# --------------------------------------------------------------------------- Ray cluster launcher configs


def test_vm_configs_present():
    names = {p.name for p in VM_CONFIGS}
    assert {"aws-gpu.yaml", "gcp-gpu.yaml"} <= names, names


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_vm_config_matches_ray_schema(path, ray_schema):
    _validate(_load(path), ray_schema)


@pytest.mark.parametrize("path", VM_CONFIGS, ids=_ids(VM_CONFIGS))
def test_vm_config_survives_ray_offline_preparation(path):
    """The offline part of `ray up`: merge with the provider defaults, then Ray's validate_config
    (schema again, head_node_type in available_node_types, sum of min_workers <= max_workers,
    docker image + container name). Everything after this step needs cloud credentials."""
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except ImportError as e:  # private API; pinned Ray has it
        pytest.skip(f"ray {RAY_VERSION}: offline config preparation not importable ({e})")
    prepared = prepare_config(copy.deepcopy(_load(path)))
    validate_config(prepared)
    assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == 0


@pytest.mark.parametrize("path", VM_CONFIGS, ids=_ids(VM_CONFIGS))
def test_vm_config_basics(path):
    cfg = _load(path)
    assert cfg["cluster_name"] == "hwclf"
    assert cfg["provider"]["type"] in {"aws", "gcp"}
    assert path.name.startswith(cfg["provider"]["type"]), "file name and provider disagree"
    assert cfg.get("idle_timeout_minutes", 0) > 0, "idle workers must be reclaimed (cost control)"
    assert isinstance(cfg.get("max_workers"), int) and cfg["max_workers"] >= 1


@pytest.mark.parametrize("path", VM_CONFIGS, ids=_ids(VM_CONFIGS))
def test_head_runs_no_trials(path):
    head = _head(_load(path))
    assert head["resources"].get("CPU") == 0, "the head must advertise CPU: 0 (no trials on the head)"
    assert head["resources"].get("GPU", 0) == 0


@pytest.mark.parametrize("path", VM_CONFIGS, ids=_ids(VM_CONFIGS))
def test_gpu_worker_type(path):
    cfg = _load(path)
    gpu = _gpu_workers(cfg)
    assert gpu, "no worker node type advertises a GPU"
    for name, node in gpu.items():
        assert node.get("min_workers", 0) == 0, f"{name}: GPU workers should scale from zero"
        assert 1 <= node.get("max_workers", cfg["max_workers"]) <= cfg["max_workers"], name
        nc = node["node_config"]
        if cfg["provider"]["type"] == "aws":
            assert nc["InstanceType"].split(".")[0] in {"g4dn", "g5", "g6", "g6e", "p3", "p4d", "p5"}, nc
            assert nc["InstanceMarketOptions"]["MarketType"] == "spot"
        else:
            acc = nc["guestAccelerators"]
            assert acc and acc[0]["acceleratorCount"] >= 1 and acc[0]["acceleratorType"].startswith("nvidia-")
            # scheduling is an object in the Compute API, not a list (ray-project/ray#46248)
            sched = nc["scheduling"]
            assert isinstance(sched, dict), "GCP scheduling must be a mapping, not a list"
            assert sched.get("preemptible") is True or sched.get("provisioningModel") == "SPOT"
            assert sched.get("onHostMaintenance") == "TERMINATE", "GPU VMs cannot live-migrate"


@pytest.mark.parametrize("path", VM_CONFIGS, ids=_ids(VM_CONFIGS))
def test_workers_have_storage_credentials(path):
    """Trials write checkpoints to S3/GCS from the workers, which get no credentials by default."""
    cfg = _load(path)
    for name, node in _gpu_workers(cfg).items():
        nc = node["node_config"]
        if cfg["provider"]["type"] == "aws":
            profile = nc.get("IamInstanceProfile", {})
            assert profile.get("Arn") or profile.get("Name"), f"{name}: no IamInstanceProfile"
        else:
            accounts = nc.get("serviceAccounts", [])
            assert accounts and accounts[0].get("email"), f"{name}: no service account"
            scopes = accounts[0].get("scopes", [])
            assert any(s.endswith(("/cloud-platform", "/devstorage.read_write", "/devstorage.full_control"))
                       for s in scopes), f"{name}: no scope that can write to GCS: {scopes}"


@pytest.mark.parametrize("path", VM_CONFIGS, ids=_ids(VM_CONFIGS))
def test_docker_images_pinned_to_installed_ray(path):
    cfg = _load(path)
    docker = cfg["docker"]
    assert docker.get("container_name"), "docker.container_name must be set"
    images = {k: docker[k] for k in ("image", "head_image", "worker_image") if k in docker}
    for name, node in cfg["available_node_types"].items():
        if "worker_image" in node.get("docker", {}):
            images[f"{name}.worker_image"] = node["docker"]["worker_image"]
    assert "image" in images
    for key, image in images.items():
        if image.startswith("rayproject/"):
            tag = _image_tag(image)
            assert tag.startswith(f"{RAY_VERSION}-py3"), (
                f"docker.{key} = {image}: tag must start with the installed Ray version {RAY_VERSION}")
    # GPU workers run the GPU image unless a node type overrides it.
    for name, node in _gpu_workers(cfg).items():
        worker_image = node.get("docker", {}).get("worker_image", docker.get("worker_image", docker["image"]))
        assert worker_image.endswith("-gpu") or not worker_image.startswith("rayproject/"), (name, worker_image)


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_ray_pins_in_commands_match_installed_ray(path):
    cfg = _load(path)
    text = "\n".join(c for k in ("setup_commands", "head_setup_commands", "worker_setup_commands")
                     for c in cfg.get(k, []))
    pins = re.findall(r"ray(?:\[[^\]]*\])?==([0-9][^\s\"']*)", text)
    assert pins, "setup commands should pin ray so that pip never replaces the image's Ray"
    assert set(pins) == {RAY_VERSION}, pins


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_file_mounts_ship_the_project(path):
    cfg = _load(path)
    mounts = cfg.get("file_mounts", {})
    assert mounts, "file_mounts is empty: `ray submit` uploads only the script"
    for remote, local in mounts.items():
        assert not os.path.isabs(os.path.expanduser(local)), f"{local}: use a path relative to the repo root"
        assert (REPO / local).exists(), f"file_mounts source {local!r} does not exist under {REPO}"
    remote = _project_mount(cfg)
    assert (REPO / "pyproject.toml").is_file()
    # `ray submit` runs ~/run.py, i.e. with ~ first on sys.path; with an editable install a ~/hwclf
    # or ~/sweep folder (no __init__.py) would be imported as a namespace package instead.
    assert Path(remote.rstrip("/")).name not in {"hwclf", "sweep"}, remote


@pytest.mark.parametrize("path", VM_CONFIGS, ids=_ids(VM_CONFIGS))
def test_setup_commands_install_the_project(path):
    cfg = _load(path)
    remote = _project_mount(cfg).rstrip("/")
    common = cfg.get("setup_commands", [])
    head = common + cfg.get("head_setup_commands", [])
    workers = common + cfg.get("worker_setup_commands", [])
    for name, node in _workers(cfg).items():  # a node type's own list replaces the global ones
        if "worker_setup_commands" in node:
            workers = node["worker_setup_commands"]
    assert any(remote in c for c in common + head + workers), f"no setup command uses the mount {remote}"
    assert any("pip install" in c for c in head), "the head (driver) must get the project installed"
    assert any("pip install" in c and "[gpu]" in c for c in workers), "workers must install the project with [gpu]"
    assert any("load_dataset('emnist-letters')" in c for c in workers), "workers should warm the EMNIST cache"


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=_ids(LAUNCHER_CONFIGS))
def test_start_commands_standard(path):
    cfg = _load(path)
    head = " ".join(cfg["head_start_ray_commands"])
    worker = " ".join(cfg["worker_start_ray_commands"])
    assert cfg["head_start_ray_commands"][0].strip() == "ray stop"
    assert cfg["worker_start_ray_commands"][0].strip() == "ray stop"
    assert "ray start" in head and "--head" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "--address=$RAY_HEAD_IP:6379" in worker


@pytest.mark.parametrize("path", VM_CONFIGS, ids=_ids(VM_CONFIGS))
def test_header_documents_run_and_cost(path):
    header = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header).lower()
    for needle in ("ray up", "ray submit", "--preset emnist-full", "--storage", "ray down",
                   "90 trials", "estimate", "$"):
        assert needle in text, f"{path.name}: header comment does not mention {needle!r}"


def test_onprem_config_survives_ray_offline_preparation():
    """The local provider's preparation: one node type for head and workers, as many workers as IPs."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = _load(ONPREM)
    assert cfg["provider"]["type"] == "local" and cfg["provider"]["head_ip"]
    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    node = prepared["available_node_types"][prepared["head_node_type"]]
    assert node["min_workers"] == node["max_workers"] == len(cfg["provider"]["worker_ips"])


def test_onprem_setup_makes_the_project_venv_the_login_python():
    """No image on your own machines: a venv, activated in ~/.bashrc (Ray runs every command, and `ray
    submit` its `python ~/run.py`, in `bash --login -i`), with the mounted copy installed into it."""
    cfg = _load(ONPREM)
    setup = cfg["setup_commands"]
    venv = next(c for c in setup if "-m venv" in c).split()[-1]
    assert any(f"source {venv}/bin/activate" in c and "~/.bashrc" in c for c in setup)
    remote = _project_mount(cfg).rstrip("/")
    copy_cmd = next(c for c in setup if c.startswith("rm -rf") and f"cp -r {remote} " in c)
    build = copy_cmd.split()[-1]
    assert any(c.startswith(f"{venv}/bin/pip install") and build in c for c in setup), setup
    assert setup.index(copy_cmd) < next(i for i, c in enumerate(setup) if "pip install" in c)


# The schema check can fail: a copy of the AWS config with one mistake is rejected.
def _misspelt_top_level(cfg):
    cfg["max_worker"] = cfg.pop("max_workers")


def _wrong_type_top_level(cfg):
    cfg["max_workers"] = "8"


def _misspelt_node_type_key(cfg):
    node = next(iter(_gpu_workers(cfg).values()))
    node["min_worker"] = node.pop("min_workers")


def _fractional_resource(cfg):
    next(iter(_gpu_workers(cfg).values()))["resources"]["GPU"] = 0.25


def _commands_not_a_list(cfg):
    cfg["setup_commands"] = "pip install ."


@pytest.mark.parametrize("mutate", [_misspelt_top_level, _wrong_type_top_level, _misspelt_node_type_key,
                                    _fractional_resource, _commands_not_a_list],
                         ids=lambda f: f.__name__.strip("_"))
def test_schema_rejects_broken_copy(mutate, ray_schema):
    cfg = _load(CLUSTER / "aws-gpu.yaml")
    _validate(copy.deepcopy(cfg), ray_schema)  # the original passes...
    mutate(cfg)
    with pytest.raises(jsonschema.ValidationError):  # ...the broken copy does not
        _validate(cfg, ray_schema)


# --------------------------------------------------------------------------- KubeRay RayJob

# Field names of the KubeRay v1 API types (ray-operator/apis/ray/v1/rayjob_types.go and
# raycluster_types.go). Not the full CRD schema, but enough to catch a misspelt key, which the API
# server would silently drop (pruning) or reject. Extend when using a newer field on purpose.
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
    "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint",
    "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus",
    "entrypointNumGpus", "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend", "schedule",
}
RAYCLUSTER_SPEC_FIELDS = {
    "headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling", "autoscalerOptions",
    "headServiceAnnotations", "suspend", "gcsFaultToleranceOptions", "managedBy",
}
HEAD_GROUP_FIELDS = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP_FIELDS = {
    "groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams", "template",
    "scaleStrategy", "suspend", "idleTimeoutSeconds",
}
AUTOSCALER_OPTION_FIELDS = {
    "resources", "image", "imagePullPolicy", "env", "envFrom", "volumeMounts", "securityContext",
    "idleTimeoutSeconds", "upscalingMode", "version",
}
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.fixture(scope="module")
def rayjob() -> dict:
    with open(RAYJOB, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    jobs = [d for d in docs if d.get("kind") == "RayJob"]
    assert len(jobs) == 1, f"expected exactly one RayJob in {RAYJOB.name}, found {len(jobs)}"
    return jobs[0]


def _containers(template: dict) -> list:
    containers = template["spec"]["containers"]
    assert containers, "pod template without containers"
    return containers


def _unknown(fields: dict, allowed: set) -> set:
    return set(fields) - allowed


def test_rayjob_kind_and_metadata(rayjob):
    assert rayjob["apiVersion"] == "ray.io/v1"
    assert rayjob["kind"] == "RayJob"
    name = rayjob["metadata"]["name"]
    assert DNS_LABEL.match(name) and len(name) <= 47, f"{name!r}: RayJob names must be short DNS labels"


def test_rayjob_no_unknown_fields(rayjob):
    spec = rayjob["spec"]
    assert not _unknown(spec, RAYJOB_SPEC_FIELDS), _unknown(spec, RAYJOB_SPEC_FIELDS)
    rcs = spec["rayClusterSpec"]
    assert not _unknown(rcs, RAYCLUSTER_SPEC_FIELDS), _unknown(rcs, RAYCLUSTER_SPEC_FIELDS)
    assert not _unknown(rcs["headGroupSpec"], HEAD_GROUP_FIELDS), _unknown(rcs["headGroupSpec"], HEAD_GROUP_FIELDS)
    for group in rcs.get("workerGroupSpecs", []):
        assert not _unknown(group, WORKER_GROUP_FIELDS), _unknown(group, WORKER_GROUP_FIELDS)
    opts = rcs.get("autoscalerOptions", {})
    assert not _unknown(opts, AUTOSCALER_OPTION_FIELDS), _unknown(opts, AUTOSCALER_OPTION_FIELDS)


def test_rayjob_entrypoint_and_lifecycle(rayjob):
    spec = rayjob["spec"]
    entry = spec["entrypoint"]
    assert isinstance(entry, str) and entry.strip()
    assert "sweep/run.py" in entry or re.search(r"\bhwclf\b", entry), entry
    assert "--preset emnist-full" in entry
    storage = re.search(r"--storage[ =](\S+)", entry)
    assert storage and storage.group(1).startswith(("s3://", "gs://")), (
        "a multi-node run needs a bucket URI for --storage")
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] >= 0
    assert spec.get("submissionMode", "K8sJobMode") in SUBMISSION_MODES
    if "activeDeadlineSeconds" in spec:
        assert isinstance(spec["activeDeadlineSeconds"], int) and spec["activeDeadlineSeconds"] > 0


def test_rayjob_entrypoint_script_is_in_the_image(rayjob):
    """An absolute script path in the entrypoint must be where cluster/Dockerfile puts the project."""
    m = re.search(r"(/\S+)/sweep/run\.py", rayjob["spec"]["entrypoint"])
    if not m:
        pytest.skip("entrypoint does not name sweep/run.py by absolute path")
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(rf"^COPY\b.*\s{re.escape(m.group(1))}/?\s*$", dockerfile, re.M), (
        f"cluster/Dockerfile does not COPY the project to {m.group(1)}")


def test_rayjob_ray_version(rayjob):
    assert str(rayjob["spec"]["rayClusterSpec"]["rayVersion"]) == RAY_VERSION


def test_rayjob_head_group(rayjob):
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]
    params = head["rayStartParams"]
    assert isinstance(params, dict)
    assert all(isinstance(v, str) for v in params.values()), f"rayStartParams values must be strings: {params}"
    assert params.get("num-cpus") == "0", "the head must not run trials"
    for c in _containers(head["template"]):
        assert c.get("image"), "head container without image"
        assert DNS_LABEL.match(c["name"])
        for section in ("limits", "requests"):
            assert "nvidia.com/gpu" not in c.get("resources", {}).get(section, {}), "the head needs no GPU"


def test_rayjob_gpu_worker_group(rayjob):
    groups = rayjob["spec"]["rayClusterSpec"].get("workerGroupSpecs", [])
    gpu_groups = [g for g in groups
                  if any(int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)) >= 1
                         for c in _containers(g["template"]))]
    assert gpu_groups, "no worker group has nvidia.com/gpu in its container limits"
    for g in groups:
        assert DNS_LABEL.match(g["groupName"]), g["groupName"]
        assert isinstance(g["rayStartParams"], dict)
        assert all(isinstance(v, str) for v in g["rayStartParams"].values()), g["rayStartParams"]
        lo, hi = g.get("minReplicas", 0), g.get("maxReplicas", 2**31 - 1)
        assert 0 <= lo <= hi and lo <= g.get("replicas", lo) <= hi, (lo, g.get("replicas"), hi)
        for c in _containers(g["template"]):
            assert c.get("image") and DNS_LABEL.match(c["name"])


def test_rayjob_images_built_for_installed_ray(rayjob):
    """Images are the project image from cluster/Dockerfile, tagged with the Ray version inside."""
    rcs = rayjob["spec"]["rayClusterSpec"]
    templates = [rcs["headGroupSpec"]["template"]] + [g["template"] for g in rcs.get("workerGroupSpecs", [])]
    for template in templates:
        for c in _containers(template):
            tag = _image_tag(c["image"])
            assert tag.endswith(f"ray{RAY_VERSION}") or tag.startswith(f"{RAY_VERSION}-py3"), (
                f"{c['image']}: tag does not name Ray {RAY_VERSION}")


def test_dockerfile_builds_on_pinned_ray_image():
    text = DOCKERFILE.read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms, "cluster/Dockerfile has no FROM"
    assert re.fullmatch(rf"rayproject/ray:{re.escape(RAY_VERSION)}-py3\d+-gpu", froms[0]), froms[0]
    assert re.search(r"pip install[^\n]*\"?\.\[gpu\]\"?", text), "the image must pip install the project with [gpu]"
    pins = re.findall(r"ray(?:\[[^\]]*\])?==([0-9][^\s\"']*)", text)
    assert pins and set(pins) == {RAY_VERSION}, pins
    assert (CLUSTER / "Dockerfile.dockerignore").is_file(), "the build context would include .git and results"


def test_readme_references_existing_files():
    text = README.read_text(encoding="utf-8")
    for ref in sorted(set(re.findall(r"\bcluster/[\w.-]+", text))):
        assert (REPO / ref).exists(), f"cluster/README.md mentions {ref}, which does not exist"
    for needle in ("ray up cluster/aws-gpu.yaml", "ray down", "kubectl apply -f cluster/kuberay-rayjob.yaml",
                   "ray up -y cluster/onprem.yaml",
                   "ray job submit", "--resume"):
        assert needle in text, f"cluster/README.md does not mention {needle!r}"
