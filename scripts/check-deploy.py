"""Checks the deployment files under deploy/ offline (scripts/check-deploy.sh
runs it in its venv); exits 1 naming every problem found.

1. Renders each kustomization under deploy/kubernetes (base and overlays)
   with a small renderer of the Kustomize fields they use: no Kustomize is
   in the registries this project may use. It refuses any field it does not
   implement. Where `kubectl` is installed, `kubectl kustomize` renders the
   same directories and both renderings must hold the same objects.
2. Validates every rendered object: built-in kinds against the Kubernetes
   API schemas that kubernetes-validate carries (strict: unknown fields are
   errors), at the oldest and newest versions in K8S_VERSIONS; SpinApps
   against spin-operator's CRD vendored in deploy/kubernetes/schemas/, made
   strict the same way. Any other kind is an error.
3. Cross-checks what no schema can: SpinApp variables are declared in
   spin.toml and its secret ones come from Secrets; every ConfigMap or
   Secret key referenced exists unless optional; the bridge's environment
   names are ones bridge/src/config.rs reads; deploy/spin/README.md names
   every variable; deploy/spin/runtime-config.toml uses only keys Spin 3.0
   to 4.0 accept (Spin refuses unknown ones at start).

Usage: check-deploy.py [ROOT]  (ROOT: the repository, or a copy of it)
"""

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

# Kubernetes releases the built-in kinds must validate against.
K8S_VERSIONS = ["1.30", "1.37"]
# The vendored CRD, as git's blob id of the file at its source (see
# deploy/kubernetes/schemas/README.md): an edit to it is an error.
SPINAPP_CRD = "core.spinkube.dev_spinapps.yaml"
SPINAPP_CRD_BLOB = "60c18d31077423f3565bcb9d869e91b0192ababf"
# Environment the bridge reads besides its flags (crates/telemetry, kafka.rs).
BRIDGE_EXTRA_ENV = {"RUST_LOG", "AIES_KAFKA_DEBUG"}
# Top-level runtime-config keys that Spin 3.0 through 4.0.2 all read
# (spinframework/spin crates/runtime-config and the factors' runtime_config).
RUNTIME_CONFIG_KEYS = {
    "variables_provider", "config_provider", "key_value_store",
    "sqlite_database", "llm_compute", "client_tls", "state_dir", "log_dir",
}
# And the types of each that they all know (aws_dynamo came after 3.0).
RUNTIME_CONFIG_TYPES = {
    "variables_provider": {"env", "static", "vault", "azure_key_vault"},
    "key_value_store": {"spin", "redis", "azure_cosmos"},
    "llm_compute": {"spin", "remote_http"},
}
WORKLOADS = {"Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"}
CLUSTER_SCOPED = {"Namespace"}  # the only cluster-scoped kind used here

problems = []


def problem(where, message):
    problems.append(f"{where}: {message}")


def load_yaml(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def ident(obj):
    meta = obj.get("metadata", {})
    return (obj.get("apiVersion"), obj.get("kind"), meta.get("namespace"), meta.get("name"))


# --- 1. rendering --------------------------------------------------------

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "replicas", "images", "patches"}


class RenderError(Exception):
    pass


def render(directory, used):
    """The objects kustomize would build from `directory`; `used` collects
    every file read."""
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise RenderError(f"{directory}: no kustomization.yaml")
    used.add(path.resolve())
    (k,) = load_yaml(path)
    unknown = set(k) - KUSTOMIZATION_FIELDS
    if unknown:
        raise RenderError(f"{path}: fields this renderer does not implement: {sorted(unknown)}")
    objects = []
    for entry in k.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            objects += render(target, used)
        elif target.is_file():
            used.add(target)
            objects += load_yaml(target)
        else:
            raise RenderError(f"{path}: resource {entry} not found")
    seen = set()
    for obj in objects:
        if ident(obj) in seen:
            raise RenderError(f"{path}: {ident(obj)} appears twice")
        seen.add(ident(obj))
    # Kustomize's order: patches, namespace, replicas, images.
    for patch in k.get("patches", []):
        apply_patch(path, patch, objects)
    if "namespace" in k:
        for obj in objects:
            if obj["kind"] == "Namespace":  # kustomize renames it to match
                obj["metadata"]["name"] = k["namespace"]
            elif obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = k["namespace"]
    for entry in k.get("replicas", []):
        hits = [o for o in objects
                if o["metadata"]["name"] == entry["name"] and o["kind"] in WORKLOADS]
        if not hits:  # as kustomize: the count is for built-in workloads only
            raise RenderError(f"{path}: replicas: no built-in workload named {entry['name']}")
        for obj in hits:
            obj["spec"]["replicas"] = entry["count"]
    for image in k.get("images", []):
        set_image(path, image, objects)
    return objects


def apply_patch(path, patch, objects):
    if set(patch) - {"target", "patch"} or set(patch.get("target", {})) - {"kind", "name"}:
        raise RenderError(f"{path}: only inline patches with a kind/name target are implemented")
    ops = yaml.safe_load(patch["patch"])
    if not isinstance(ops, list):
        raise RenderError(f"{path}: only JSON 6902 patches (a list of ops) are implemented")
    target = patch["target"]
    hits = [o for o in objects
            if all((o["metadata"]["name"] if f == "name" else o["kind"]) == v
                   for f, v in target.items())]
    if not hits:
        raise RenderError(f"{path}: patch target {target} matches nothing")
    for obj in hits:
        for op in ops:
            json_patch(path, obj, op)


def json_patch(path, obj, op):
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    node = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.get(part)
        if node is None:
            raise RenderError(f"{path}: {op['path']} does not exist")
    if isinstance(node, list):
        last = len(node) if last == "-" else int(last)
    exists = (last < len(node)) if isinstance(node, list) else (last in node)
    if op["op"] in ("replace", "remove") and not exists:
        raise RenderError(f"{path}: {op['op']} {op['path']}: no such field")
    if op["op"] == "remove":
        del node[last]
    elif op["op"] == "replace":
        node[last] = op["value"]
    elif op["op"] == "add":
        if isinstance(node, list):
            node.insert(last, op["value"])
        else:
            node[last] = op["value"]
    else:
        raise RenderError(f"{path}: patch op {op['op']} is not implemented")


def set_image(path, image, objects):
    if set(image) - {"name", "newName", "newTag"}:
        raise RenderError(f"{path}: images: only name, newName and newTag are implemented")
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name, _, tag = container["image"].rpartition(":")
            if "/" in tag or not name:  # no tag: a registry port is not one
                name, tag = container["image"], ""
            if name == image["name"]:
                tag = image.get("newTag", tag)
                container["image"] = image.get("newName", name) + (f":{tag}" if tag else "")


def kubectl_render(directory):
    """`kubectl kustomize`'s objects, or None where kubectl is missing."""
    if not shutil.which("kubectl"):
        return None
    out = subprocess.run(["kubectl", "kustomize", str(directory)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory}: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


# --- 2. schemas ----------------------------------------------------------

def strict(schema):
    """The CRD's structural schema with unknown fields refused, as the API
    server's strict field validation (kubectl's default) does."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(v) for v in schema]
    return schema


def crd_validators(schemas_dir):
    """(apiVersion, kind) -> validator, for each vendored CRD version."""
    path = schemas_dir / SPINAPP_CRD
    data = path.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    if blob != SPINAPP_CRD_BLOB:
        problem(path, f"differs from its source (blob {blob}, expected {SPINAPP_CRD_BLOB})")
    validators = {}
    for crd in load_yaml(path):
        spec = crd["spec"]
        for version in spec["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
            validators[key] = jsonschema.Draft7Validator(schema)
    return validators


def validate(where, obj, crds):
    name = f"{where}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in crds:
        for error in crds[key].iter_errors(obj):
            problem(name, f"{'.'.join(map(str, error.path))}: {error.message}")
        # The CRD says only "object" of metadata: check it as Kubernetes'.
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata")}
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problem(name, f"Kubernetes {version}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problem(name, f"no schema: {e.message}")


# --- 3. cross-checks -----------------------------------------------------

def key_refs(obj):
    """(kind, name, key, optional, env name) of each ConfigMap/Secret key read."""
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    envs = [e for c in pod.get("containers", []) for e in c.get("env", [])]
    if obj["kind"] == "SpinApp":
        envs = [dict(v, name="SPIN_VARIABLE_" + v["name"].upper()) for v in obj["spec"].get("variables", [])]
    for env in envs:
        source = env.get("valueFrom", {})
        for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if field in source:
                ref = source[field]
                yield kind, ref["name"], ref["key"], ref.get("optional", False), env["name"]


def data_keys(obj):
    return set(obj.get("data") or {}) | set(obj.get("stringData") or {})


def cross_check(where, objects, root):
    spin = tomllib.loads((root / "spin.toml").read_text())
    variables = spin.get("variables", {})
    bridge_env = set(re.findall(r'env = "([A-Z0-9_]+)"', (root / "bridge/src/config.rs").read_text()))
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    for obj in objects:
        label = f"{where}: {obj['kind']}/{obj['metadata']['name']}"
        for kind, name, key, optional, env in key_refs(obj):
            source = by_name.get((kind, name))
            if source is None:
                problem(label, f"{env} reads {kind} {name}, which is not in the rendering")
            elif key not in data_keys(source) and not optional:
                problem(label, f"{env} reads key {key} that {kind} {name} lacks")
        if obj["kind"] == "SpinApp":
            for var in obj["spec"].get("variables", []):
                declared = variables.get(var["name"])
                if declared is None:
                    problem(label, f"variable {var['name']} is not declared in spin.toml")
                elif declared.get("secret") and "secretKeyRef" not in var.get("valueFrom", {}):
                    problem(label, f"variable {var['name']} is secret in spin.toml: bind it from a Secret")
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            if container["name"] != "bridge":
                continue
            names = {e["name"] for e in container.get("env", [])}
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                kind = "ConfigMap" if "configMapRef" in source else "Secret"
                if (kind, ref["name"]) not in by_name and not ref.get("optional"):
                    problem(label, f"envFrom reads {kind} {ref['name']}, which is not in the rendering")
                names |= data_keys(by_name.get((kind, ref["name"]), {}))
            for env in sorted(names - bridge_env - BRIDGE_EXTRA_ENV):
                if not env.startswith("OTEL_"):
                    problem(label, f"the bridge reads no {env} (bridge/src/config.rs)")


def check_spin_files(root):
    readme = root / "deploy/spin/README.md"
    text = readme.read_text() if readme.is_file() else ""
    for name in tomllib.loads((root / "spin.toml").read_text()).get("variables", {}):
        if f"`{name}`" not in text:
            problem(readme, f"does not list the variable `{name}` of spin.toml")
    path = root / "deploy/spin/runtime-config.toml"
    try:
        config = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        return problem(path, str(e))
    for key in sorted(set(config) - RUNTIME_CONFIG_KEYS):
        problem(path, f"Spin 3.0-4.0 refuse the key {key}")
    entries = {
        "variables_provider": config.get("variables_provider", []),
        "key_value_store": list(config.get("key_value_store", {}).values()),
        "llm_compute": [config["llm_compute"]] if "llm_compute" in config else [],
    }
    for key, items in entries.items():
        for item in items:
            if item.get("type") not in RUNTIME_CONFIG_TYPES[key]:
                problem(path, f"{key}: unknown type {item.get('type')!r}")


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    kube = root / "deploy/kubernetes"
    crds = crd_validators(kube / "schemas")
    used = set()
    for path in sorted(kube.rglob("kustomization.yaml")):
        directory = path.parent
        where = directory.relative_to(root)
        try:
            objects = render(directory, used)
            theirs = kubectl_render(directory)
            compared = "kubectl not found"
            if theirs is not None:
                compared = "same as kubectl kustomize"
                mine, theirs_by_id = ({ident(o): o for o in objs} for objs in (objects, theirs))
                for key in sorted(set(mine) | set(theirs_by_id), key=str):
                    if mine.get(key) != theirs_by_id.get(key):
                        compared = "NOT as kubectl kustomize"
                        problem(where, f"this renderer and `kubectl kustomize` disagree on {key}")
            for obj in objects:
                validate(where, obj, crds)
            cross_check(where, objects, root)
        except RenderError as e:
            problem(where, str(e))
            continue
        except Exception as e:  # a malformed file: say which, go on
            problem(where, f"{type(e).__name__}: {e}")
            continue
        print(f"{where}: {len(objects)} objects ({compared})")
    for path in sorted(kube.rglob("*.yaml")):
        if path.resolve() not in used and path.parent.name != "schemas":
            problem(path.relative_to(root), "is in no kustomization, so nothing checks it")
    check_spin_files(root)
    for line in problems:
        print(f"FAIL {line.replace(f'{root}/', '')}")
    print(f"deploy check: {'FAILED, ' + str(len(problems)) + ' problems' if problems else 'ok'}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
