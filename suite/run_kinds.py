"""What kinds of run there are (stages, methods, semi-supervised terms) and which identity scopes apply to
each: the vocabulary :mod:`suite.config`'s fields declare their scopes in and :mod:`suite.config_rules`
checks against, kept apart from the field table so that both read it without importing each other."""

from __future__ import annotations

STAGES = ("regressor", "segmenter")
METHODS = ("fs", "proposals", "proposed", "oracle")
SEG_METHODS_WITH_PENALTY = ("proposed", "oracle")
# the semi-supervised term a segmenter run may add on the unlabeled slices (suite/ssl.py, docs/ssl.md)
SSL_TERMS = ("none", "mean_teacher", "entropy_min", "cps")
SSL_ACTIVE = ("ssl", SSL_TERMS[1:])  # active_when of the fields every term reads

# Identity scopes: which runs a field changes. ``identity()`` takes the fields whose scope applies to the run
# (``identity_scopes``); a field without a scope (paths, device, analysis-only) never enters a run id.
ALL = "all"  # every run
SEG = "segmenter"  # every segmenter run
UNLABELED = "unlabeled"  # segmenter runs that use the unlabeled images (proposals, proposed, oracle)
PENALTY = "penalty"  # segmenter runs with the size penalty (proposed, oracle)
REG = "regressor"  # the regressor run and the proposed runs that read its predictions
# the constrained targets (which classes, which attributes): the regressor that predicts them and the runs
# that bound them (proposed, oracle)
CONSTRAINED = "constrained"


def identity_scopes_of(stage: str, method: str, ssl: str = "none") -> set[str]:
    """The identity scopes that apply to a run of ``stage``, ``method`` and ``ssl`` term (see ``ALL`` …
    ``REG``): an ``ssl`` term makes even an FS run use the unlabeled images."""
    if stage == "regressor":
        return {ALL, REG, CONSTRAINED}
    scopes = {ALL, SEG}
    if method != "fs" or ssl != "none":
        scopes.add(UNLABELED)
    if method in SEG_METHODS_WITH_PENALTY:
        scopes |= {PENALTY, CONSTRAINED}
    if method == "proposed":
        scopes.add(REG)
    return scopes
