"""Images for the docker runtime: existing references checked, Dockerfile builds cached by content.

A build's tag is ``compat-build/{service}:{hash12}``, where the hash covers the Dockerfile, every file of
the context (minus ``.git``, ``__pycache__``, ``*.pyc`` and ``.dockerignore`` entries), the build args,
the target, and the id of each local base image its ``FROM`` lines name (so rebuilding
``compat-base:bookworm`` invalidates every image built on it). When the tag exists, nothing is built:
unchanged versions cost one ``images.get``.

Images are a cache shared across runs: they carry :data:`~compat.runtime.base.LABEL_MANAGED` but no
run-specific label, and cleanup never reaps them. Specs that share a (context, Dockerfile, args, target)
are built once; distinct builds run in parallel (at most :data:`MAX_PARALLEL_BUILDS`).

``.dockerignore`` support is deliberately simple: ``*``, ``?`` and ``**`` globs on paths relative to the
context, matching a path or any of its parent directories; ``!`` exceptions are not honoured (a file they
re-include is then missing from the hash, so a change to it alone would not trigger a rebuild).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound  # type: ignore[import-untyped]

from compat.config.model import BuildSpec
from compat.errors import BuildError
from compat.runtime.base import LABEL_MANAGED, InstanceSpec, Progress

MAX_PARALLEL_BUILDS = 4
BUILD_LOG_LINES = 20
HASH_LENGTH = 12
_ALWAYS_SKIPPED_DIRS = frozenset({".git", "__pycache__"})
_NO_REGISTRY_HINT = "no registry may be reachable from here, so every image must exist locally or be built"


@dataclass(frozen=True)
class ResolvedImage:
    """The image an instance runs: ``ref`` to create containers from, ``id`` for findings."""

    ref: str
    id: str
    built: bool = False  # True when this resolve() ran a build (False: present already / cache hit)


@dataclass
class _BuildJob:
    key: str
    build: BuildSpec
    specs: list[InstanceSpec] = field(default_factory=list)
    missing_bases: list[str] = field(default_factory=list)  # FROM images not present locally

    @property
    def tags(self) -> list[str]:
        services = dict.fromkeys(spec.service for spec in self.specs)
        return [build_tag(service, self.key) for service in services]

    def who(self) -> str:
        return ", ".join(f"{s.service}@{s.version} (instance {s.name!r})" for s in self.specs)


def build_tag(service: str, digest: str) -> str:
    """``compat-build/{service}:{hash12}``, the service name made a valid repository component."""
    safe = re.sub(r"[^a-z0-9._-]+", "-", service.lower()).strip("-._") or "service"
    return f"compat-build/{safe}:{digest[:HASH_LENGTH]}"


# -- hashing --------------------------------------------------------------------------------------------


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def dockerignore_patterns(context: Path) -> list[re.Pattern[str]]:
    """The ``.dockerignore`` exclusions of ``context`` (``!`` exceptions are skipped; see module doc)."""
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    patterns = []
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        line = line.removeprefix("./").strip("/")
        if line:
            patterns.append(_glob_regex(line))
    return patterns


def _ignored(rel: str, patterns: Sequence[re.Pattern[str]]) -> bool:
    parts = rel.split("/")
    if any(part in _ALWAYS_SKIPPED_DIRS for part in parts) or rel.endswith(".pyc"):
        return True
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(p.match(prefix) for p in patterns for prefix in prefixes)


def context_files(context: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, path) of every file the hash covers, sorted."""
    patterns = dockerignore_patterns(context)
    found = []
    for path in context.rglob("*"):
        rel = path.relative_to(context).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        if not _ignored(rel, patterns):
            found.append((rel, path))
    return sorted(found)


_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


def base_references(dockerfile_text: str, args: dict[str, str]) -> list[str]:
    """Image references the ``FROM`` lines name, build args and global ``ARG`` defaults substituted;
    earlier stage names and ``scratch`` left out."""
    lines: list[str] = []
    pending = ""
    for raw in dockerfile_text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") and not pending:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending)
    values: dict[str, str] = {}
    stages: set[str] = set()
    refs: list[str] = []
    seen_from = False

    def substitute(text: str) -> str:
        def repl(m: re.Match[str]) -> str:
            name = m.group(1) or m.group(3)
            return values.get(name) or (m.group(2) or "")

        return _VAR.sub(repl, text)

    for line in lines:
        words = line.split()
        if not words:
            continue
        instruction = words[0].upper()
        if instruction == "ARG" and not seen_from and len(words) > 1:
            name, _, default = words[1].partition("=")
            values[name] = args.get(name, default.strip("\"'"))
        elif instruction == "FROM":
            seen_from = True
            operands = [w for w in words[1:] if not w.startswith("--")]
            if not operands:
                continue
            ref = substitute(operands[0])
            if len(operands) >= 3 and operands[1].upper() == "AS":
                stages.add(operands[2].lower())
            if ref.lower() != "scratch" and ref.lower() not in stages:
                refs.append(ref)
    return refs


def build_digest(build: BuildSpec, base_ids: Iterable[str] = ()) -> str:
    """The content hash of a build (full hex; tags use the first 12 characters)."""
    h = hashlib.sha256(b"pytest-compat build 1\0")
    dockerfile = build.context / build.dockerfile
    h.update(b"dockerfile\0" + build.dockerfile.encode() + b"\0" + dockerfile.read_bytes() + b"\0")
    for rel, path in context_files(build.context):
        if path.is_symlink():
            body = b"symlink\0" + str(path.readlink()).encode()
        else:
            body = hashlib.sha256(path.read_bytes()).digest()
        executable = b"x" if path.stat().st_mode & 0o111 else b"-"
        h.update(b"file\0" + rel.encode() + b"\0" + executable + body + b"\0")
    for name, value in sorted(build.args.items()):
        h.update(b"arg\0" + name.encode() + b"\0" + value.encode() + b"\0")
    h.update(b"target\0" + (build.target or "").encode() + b"\0")
    for base in base_ids:
        h.update(b"base\0" + base.encode() + b"\0")
    return h.hexdigest()


# -- resolving ------------------------------------------------------------------------------------------


def _is_image_id(ref: str) -> bool:
    return ref.startswith("sha256:") or bool(re.fullmatch(r"[0-9a-f]{12,64}", ref))


class ImageResolver:
    """Turns the ``image``/``build`` of instance specs into local images (docker SDK client given)."""

    def __init__(self, client: Any, *, progress: Progress | None = None, pull: bool = True) -> None:
        self.client = client
        self.progress: Progress = progress or (lambda phase, msg: None)
        self.pull = pull
        self.builds = 0  # builds this resolver actually ran (cache hits don't count)

    def resolve(self, specs: Sequence[InstanceSpec]) -> dict[str, ResolvedImage]:
        """The image of every spec (by instance name). Raises BuildError naming the instance(s)."""
        resolved: dict[str, ResolvedImage] = {}
        jobs: dict[str, _BuildJob] = {}
        by_ref: dict[str, ResolvedImage] = {}
        for spec in specs:
            if spec.build is not None:
                key, missing = self._digest(spec)
                job = jobs.setdefault(key, _BuildJob(key, spec.build, missing_bases=missing))
                job.specs.append(spec)
            elif spec.image is not None:
                if spec.image not in by_ref:
                    by_ref[spec.image] = self._existing(spec)
                resolved[spec.name] = by_ref[spec.image]
        if jobs:
            errors: list[BuildError] = []
            with ThreadPoolExecutor(min(MAX_PARALLEL_BUILDS, len(jobs)), "compat-build") as pool:
                futures = [(job, pool.submit(self._ensure_built, job)) for job in jobs.values()]
                for job, future in futures:
                    try:
                        image = future.result()
                    except BuildError as exc:
                        errors.append(exc)
                        continue
                    for spec in job.specs:
                        resolved[spec.name] = image
            if errors:
                raise errors[0]
        return resolved

    def _digest(self, spec: InstanceSpec) -> tuple[str, list[str]]:
        """The build's content hash, and the base images its FROM lines name that are not local."""
        build = spec.build
        assert build is not None
        dockerfile = build.context / build.dockerfile
        if not build.context.is_dir():
            raise BuildError(
                f"build context {str(build.context)!r} of instance {spec.name!r} is not a directory; "
                "hint: build.context is relative to the config file"
            )
        if not dockerfile.is_file():
            raise BuildError(
                f"Dockerfile {str(dockerfile)!r} of instance {spec.name!r} does not exist; "
                "hint: build.dockerfile is relative to build.context"
            )
        base_ids = []
        missing = []
        for ref in base_references(dockerfile.read_text(errors="replace"), dict(build.args)):
            try:
                base_ids.append(str(self.client.images.get(ref).id))
            except ImageNotFound:
                base_ids.append(f"missing:{ref}")
                missing.append(ref)
            except DockerException:
                base_ids.append(f"unresolved:{ref}")
        return build_digest(build, base_ids), missing

    def _existing(self, spec: InstanceSpec) -> ResolvedImage:
        ref = spec.image
        assert ref is not None
        try:
            return ResolvedImage(ref, str(self.client.images.get(ref).id))
        except ImageNotFound:
            pass
        except DockerException as exc:
            raise BuildError(f"cannot inspect image {ref!r} of instance {spec.name!r}: {exc}") from exc
        problem = "it is not present locally"
        if self.pull and not _is_image_id(ref):
            self.progress("build", f"{ref}: not present locally, pulling")
            try:
                image = self.client.images.pull(ref)
                return ResolvedImage(ref, str(image.id))
            except DockerException as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                problem += f" and could not be pulled ({first})"
        raise BuildError(
            f"image {ref!r} of instance {spec.name!r} ({spec.service}@{spec.version}) is not available: "
            f"{problem}; hint: build it first (docker build -t {ref} …) or give this version "
            f'build = {{ context = "…" }}; {_NO_REGISTRY_HINT}'
        )

    def _ensure_built(self, job: _BuildJob) -> ResolvedImage:
        tags = job.tags
        existing = None
        for tag in tags:
            try:
                existing = self.client.images.get(tag)
                break
            except ImageNotFound:
                continue
            except DockerException as exc:
                raise BuildError(f"cannot inspect image {tag!r} for {job.who()}: {exc}") from exc
        if existing is not None:
            self._tag_all(existing, tags)
            self.progress("build", f"{tags[0]}: cached (content unchanged)")
            return ResolvedImage(tags[0], str(existing.id))
        started = time.monotonic()
        self.progress("build", f"{tags[0]}: building {job.build.context} for {job.who()}")
        output: list[str] = []
        error: str | None = None
        try:
            stream = self.client.api.build(
                path=str(job.build.context),
                dockerfile=job.build.dockerfile,
                tag=tags[0],
                buildargs=dict(job.build.args),
                target=job.build.target,
                labels={LABEL_MANAGED: "true"},
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            for chunk in stream:
                if "stream" in chunk:
                    output.extend(str(chunk["stream"]).splitlines())
                if "error" in chunk:
                    error = str(chunk["error"]).strip()
                    output.append(error)
        except (APIError, DockerException, OSError) as exc:
            error = str(exc).strip() or type(exc).__name__
        image = None
        if error is None:
            try:
                image = self.client.images.get(tags[0])
            except DockerException as exc:
                error = f"the build finished but {tags[0]!r} is missing ({exc})"
        if error is not None or image is None:
            raise BuildError(_build_failure(job, error or "unknown error", output))
        self._tag_all(image, tags)
        self.builds += 1
        self.progress("build", f"{tags[0]}: built in {time.monotonic() - started:.2f} s")
        return ResolvedImage(tags[0], str(image.id), built=True)

    @staticmethod
    def _tag_all(image: Any, tags: Sequence[str]) -> None:
        present = set(getattr(image, "tags", ()) or ())
        for tag in tags:
            if tag not in present:
                repository, _, version = tag.rpartition(":")
                image.tag(repository, version)


def _build_failure(job: _BuildJob, error: str, output: Sequence[str]) -> str:
    build = job.build
    args = ", ".join(f"{k}={v}" for k, v in sorted(build.args.items()))
    where = f"{build.context} (Dockerfile {build.dockerfile}" + (f", args {args}" if args else "")
    where += f", target {build.target})" if build.target else ")"
    tail = [line for line in output if line.strip()][-BUILD_LOG_LINES:]
    lines = [f"building the image of {job.who()} from {where} failed: {error}"]
    if tail:
        lines.append(f"  last {len(tail)} line(s) of build output:")
        lines.extend(f"    | {line}" for line in tail)
    command = ["docker", "build", *(f"--build-arg {k}={v}" for k, v in sorted(build.args.items()))]
    if build.target:
        command.append(f"--target {build.target}")
    command.append(f"-f {build.context / build.dockerfile} {build.context}")
    if job.missing_bases:
        lines.append(
            f"  hint: the base image(s) {', '.join(map(repr, job.missing_bases))} named by FROM are not "
            "present locally, so the engine tried to pull them; build or tag them locally, or pass "
            f"another base as a build arg (CI: COMPAT_BASE_IMAGE); {_NO_REGISTRY_HINT}"
        )
    lines.append(f"  hint: run the same build by hand to see all of it: {' '.join(command)}")
    return "\n".join(lines)
