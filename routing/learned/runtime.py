"""Which router artifact a policy uses, and loading it (once per artifact and process).

Artifacts live in settings.ROUTER_ARTIFACT_DIR as <artifact id>.npz with a model card beside
each; the file CURRENT there names the one new policy versions pick up. A policy version keeps
the id it was published with, so training a new artifact changes nothing until an operator
publishes it (admin: Staged rollout, "Router models"), or tries it on a share of routed users
(a trial), and restoring a version brings its artifact back.
"""

import logging
from pathlib import Path

from django.conf import settings

from routing import complexity
from routing.learned.model import (
    BUILD_KERNEL_COMMAND,
    REBUILD_COMMAND,
    ArtifactError,
    CompiledScorer,
    Router,
    load_router,
)

logger = logging.getLogger(__name__)


def artifact_dir() -> Path:
    return Path(settings.ROUTER_ARTIFACT_DIR)


def current_artifact_id() -> str:
    """Return the artifact new policy versions use: ROUTER_ARTIFACT, else the CURRENT file's."""
    if settings.ROUTER_ARTIFACT:
        return settings.ROUTER_ARTIFACT
    marker = artifact_dir() / "CURRENT"
    try:
        return marker.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def available_artifacts() -> list[str]:
    """Return the ids of the artifacts on disk, newest name first."""
    return sorted((p.stem for p in artifact_dir().glob("router-*.npz")), reverse=True)


def artifact_path(artifact_id: str) -> Path:
    return artifact_dir() / f"{artifact_id}.npz"


def router_get(artifact_id: str) -> Router | None:
    """Return the loaded router, or None when it cannot load and the keyword fallback is on.

    Without the fallback a missing or broken artifact raises ArtifactError, which names the
    file and the command that rebuilds it.
    """
    problem = router_status(artifact_id)
    if not problem:
        return load_router(str(artifact_path(artifact_id)))
    if not settings.ROUTER_KEYWORD_FALLBACK:
        raise ArtifactError(problem)
    logger.warning("router artifact unavailable, keyword classifier in use: %s", problem)
    return None


def router_status(artifact_id: str) -> str:
    """Return "" when the artifact loads, else the reason it does not (for admin)."""
    try:
        if not artifact_id:
            raise ArtifactError(
                f"No router artifact is named (ROUTER_ARTIFACT, or CURRENT in {artifact_dir()}). "
                f"Build one: {REBUILD_COMMAND}."
            )
        load_router(str(artifact_path(artifact_id)))
    except ArtifactError as error:
        return str(error)
    return ""


def router_artifact_check(app_configs=None, **kwargs) -> list:
    """Django system check (migrate, runserver, check, the ASGI start): the current artifact
    loads, or the keyword fallback is on (then a warning); a module not compiled is a warning."""
    from django.core import checks

    found = []
    missing = []
    if CompiledScorer is None:
        missing.append(
            "the router's scoring kernel (numpy scores each decision, at about three times the CPU)"
        )
    if not complexity.COUNTS_COMPILED:
        missing.append(
            "the complexity estimate's counts (Python counts them, at about twice the CPU "
            "for a long prompt)"
        )
    if missing:
        found.append(
            checks.Warning(
                f"Not compiled: {'; '.join(missing)}.",
                hint=f"Build them: {BUILD_KERNEL_COMMAND} (make install runs it).",
                id="routing.W002",
            )
        )
    problem = router_status(current_artifact_id())
    if problem and settings.ROUTER_KEYWORD_FALLBACK:
        found.append(checks.Warning(problem, hint="Keyword classifier in use.", id="routing.W001"))
    elif problem:
        hint = "Or set ROUTER_KEYWORD_FALLBACK=true to route with keywords meanwhile."
        found.append(checks.Error(problem, hint=hint, id="routing.E001"))
    return found
