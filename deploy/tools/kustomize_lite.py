"""The subset of `kustomize build` that deploy/k8s uses, for machines without kubectl or kustomize (offline checks).

Supported: resources (files and kustomization folders), namespace, images, configMapGenerator and secretGenerator
(files, literals, behavior create/replace/merge, kustomize's name hash and the references to it), and strategic-merge
patches (a file or inline, matched by kind and name, `$patch: delete` of a resource or a list item). Anything else in a
kustomization.yaml is an error, never silently ignored; tests compare the output with kubectl's where it is installed.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

KNOWN_FIELDS = {
    "apiVersion", "kind", "resources", "namespace", "images", "patches", "configMapGenerator", "secretGenerator",
    "generatorOptions",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
                  "CustomResourceDefinition", "PriorityClass"}
# Strategic-merge keys of the lists these manifests patch; any other list is replaced whole.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
              "volumeMounts": "mountPath", "imagePullSecrets": "name", "volumeClaimTemplates": "metadata.name"}
HASH_LETTERS = str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"})


class KustomizeError(ValueError):
    """A kustomization this subset cannot build; the message names the file."""


def build(folder: str | Path) -> list[dict[str, Any]]:
    """The resources `kustomize build folder` would print (in no particular order)."""
    resources, generated = _accumulate(Path(folder))
    _apply_hashes(resources, generated)
    return resources


def _key(resource: dict) -> tuple[str, str]:
    return resource["kind"], resource["metadata"]["name"]


def _accumulate(folder: Path) -> tuple[list[dict], dict[tuple[str, str], bool]]:
    """Resources of one kustomization before hashing, and {(kind, name): hashed?} of its generated ones."""
    path = folder / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{folder}: no kustomization.yaml")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(spec) - KNOWN_FIELDS)
    if unknown:
        raise KustomizeError(f"{path}: kustomize_lite does not support {', '.join(unknown)}")
    resources: list[dict] = []
    generated: dict[tuple[str, str], bool] = {}
    for entry in spec.get("resources", []):
        target = (folder / entry).resolve()
        if target.is_dir():
            inner, inner_generated = _accumulate(target)
            resources += inner
            generated.update(inner_generated)
        else:
            resources += [doc for doc in yaml.safe_load_all(target.read_text()) if doc]
    hashed = not (spec.get("generatorOptions") or {}).get("disableNameSuffixHash", False)
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for generator in spec.get(key, []):
            _generate(folder, path, kind, generator, resources, generated, hashed)
    for patch in spec.get("patches", []):
        _patch(folder, path, patch, resources)
    if "namespace" in spec:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = spec["namespace"]
            for subject in resource.get("subjects", []) if resource["kind"].endswith("RoleBinding") else []:
                if subject.get("kind") == "ServiceAccount":
                    subject["namespace"] = spec["namespace"]
    for image in spec.get("images", []):
        for resource in resources:
            _retag(resource, image)
    return resources, generated


def _generate(folder: Path, path: Path, kind: str, generator: dict, resources: list[dict],
              generated: dict[tuple[str, str], bool], hashed: bool) -> None:
    unknown = sorted(set(generator) - {"name", "files", "literals", "behavior", "options", "type"})
    if unknown:
        raise KustomizeError(f"{path}: {generator.get('name')}: kustomize_lite does not support {', '.join(unknown)}")
    data: dict[str, str] = {}
    for literal in generator.get("literals", []):
        name, sep, value = literal.partition("=")
        if not sep:
            raise KustomizeError(f"{path}: literal {literal!r} has no '='")
        data[name] = value
    for file in generator.get("files", []):
        name, sep, source = file.partition("=")
        source_path = folder / (source if sep else name)
        data[name if sep else Path(name).name] = source_path.read_text()
    name = generator["name"]
    behavior = generator.get("behavior", "create")
    existing = next((r for r in resources if _key(r) == (kind, name)), None)
    if behavior == "create":
        if existing is not None:
            raise KustomizeError(f"{path}: {kind} {name} already exists; use behavior merge or replace")
        resource: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
        if kind == "Secret":
            resource["type"] = generator.get("type", "Opaque")
        resources.append(resource)
    elif existing is None:
        raise KustomizeError(f"{path}: {kind} {name} to {behavior} does not exist")
    else:
        resource = existing
    field = "data"
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()} if kind == "Secret" else data
    resource[field] = {**resource.get(field, {}), **encoded} if behavior == "merge" else encoded
    options = generator.get("options") or {}
    generated[(kind, name)] = hashed and not options.get("disableNameSuffixHash", False)


def _patch(folder: Path, path: Path, entry: dict, resources: list[dict]) -> None:
    unknown = sorted(set(entry) - {"path", "patch"})
    if unknown:
        raise KustomizeError(f"{path}: patches: kustomize_lite does not support {', '.join(unknown)}")
    text = (folder / entry["path"]).read_text() if "path" in entry else entry["patch"]
    for doc in (d for d in yaml.safe_load_all(text) if d):
        target = next((r for r in resources if _key(r) == _key(doc)), None)
        if target is None:
            raise KustomizeError(f"{path}: patch target {doc['kind']} {doc['metadata']['name']} not found")
        if doc.get("$patch") == "delete":
            resources.remove(target)
        else:
            merged = _merge(target, {k: v for k, v in doc.items() if k != "$patch"})
            target.clear()
            target.update(merged)


def _merge_key(field: str, items: list) -> str | None:
    if field == "ports":
        return "containerPort" if any("containerPort" in i for i in items) else "port"
    return MERGE_KEYS.get(field)


def _lookup(item: dict, key: str) -> Any:
    for part in key.split("."):
        item = item.get(part, {}) if isinstance(item, dict) else {}
    return item


def _merge(base: Any, patch: Any, field: str = "") -> Any:
    """Strategic merge of patch into base (a copy): maps recursively, keyed lists by their merge key."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = _merge(out[key], value, key) if key in out else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        key = _merge_key(field, base + patch)
        if key is None or not all(isinstance(i, dict) for i in base + patch):
            return copy.deepcopy(patch)
        out = copy.deepcopy(base)
        for item in patch:
            index = next((i for i, old in enumerate(out) if _lookup(old, key) == _lookup(item, key)), None)
            if item.get("$patch") == "delete":
                if index is not None:
                    out.pop(index)
            elif index is None:
                out.append(copy.deepcopy(item))
            else:
                out[index] = _merge(out[index], item)
        return out
    return copy.deepcopy(patch)


def _pod_specs(resource: dict) -> list[dict]:
    kind = resource["kind"]
    if kind == "Pod":
        return [resource["spec"]]
    if kind == "PodTemplate":
        return [resource["template"]["spec"]]
    if kind == "CronJob":
        return [resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    template = resource.get("spec", {}).get("template") if isinstance(resource.get("spec"), dict) else None
    return [template["spec"]] if template and "spec" in template else []


def _containers(resource: dict) -> list[dict]:
    return [c for spec in _pod_specs(resource) for c in spec.get("containers", []) + spec.get("initContainers", [])]


def _retag(resource: dict, image: dict) -> None:
    for container in _containers(resource):
        name, _, tag = container["image"].partition("@")[0].partition(":")
        if name != image["name"]:
            continue
        new = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{new}@{image['digest']}"
        else:
            tag = image.get("newTag", tag)
            container["image"] = f"{new}:{tag}" if tag else new


def _go_json(value: Any) -> str:
    """json.Marshal's bytes for maps of strings: sorted keys, no spaces, <, > and & escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def name_hash(resource: dict) -> str:
    """kustomize's suffix: sha256 of the ConfigMap's or Secret's kind, (type) and data; 10 letters.

    kustomize means to hash the name too, but looks it up as one field called "metadata/name", finds nothing and
    hashes "" (api v0.18, kustomize 5.5); the same here, or the suffixes would differ from kubectl's.
    """
    encoded: dict[str, Any] = {"kind": resource["kind"], "name": "", "data": resource.get("data", {})}
    if resource["kind"] == "Secret":
        encoded["type"] = resource.get("type", "Opaque")
    return hashlib.sha256(_go_json(encoded).encode()).hexdigest()[:10].translate(HASH_LETTERS)


def _apply_hashes(resources: list[dict], generated: dict[tuple[str, str], bool]) -> None:
    renamed: dict[tuple[str, str], str] = {}
    for resource in resources:
        if generated.get(_key(resource)):
            old = resource["metadata"]["name"]
            resource["metadata"]["name"] = f"{old}-{name_hash(resource)}"
            renamed[(resource["kind"], old)] = resource["metadata"]["name"]
    for resource in resources:
        for spec in _pod_specs(resource):
            for volume in spec.get("volumes", []):
                if "configMap" in volume:
                    _rename(volume["configMap"], "name", "ConfigMap", renamed)
                if "secret" in volume:
                    _rename(volume["secret"], "secretName", "Secret", renamed)
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                for env in container.get("env", []):
                    source = env.get("valueFrom", {})
                    if "configMapKeyRef" in source:
                        _rename(source["configMapKeyRef"], "name", "ConfigMap", renamed)
                    if "secretKeyRef" in source:
                        _rename(source["secretKeyRef"], "name", "Secret", renamed)
                for env_from in container.get("envFrom", []):
                    if "configMapRef" in env_from:
                        _rename(env_from["configMapRef"], "name", "ConfigMap", renamed)
                    if "secretRef" in env_from:
                        _rename(env_from["secretRef"], "name", "Secret", renamed)


def _rename(holder: dict, field: str, kind: str, renamed: dict[tuple[str, str], str]) -> None:
    holder[field] = renamed.get((kind, holder.get(field, "")), holder.get(field))
