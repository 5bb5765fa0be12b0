"""Text templates reproduce the original method texts (SPEC 5.7-5.9) character for character."""

from __future__ import annotations

import pytest

from genies.models.templates import TEMPLATES, UnknownTemplateError, get_template

QUESTION = "\n\n### Does the responder successfully follow the instruction?\n"


def _text(name: str) -> tuple[str, bool]:
    prefix, completion, add_eos = get_template(name)("P", "R")
    return prefix + completion, add_eos


def test_texts_match_the_original_methods():
    assert _text("plain") == ("PR", False)
    assert _text("lat_stim_2") == (
        "PConsider the extent to which the responder follows the instruction below.\nR"
        "\n\nThe probability that the responder followed the instruction", False)
    assert _text("cra_yes") == ("PR" + QUESTION + "Yes", False)
    assert _text("cra_no") == ("PR" + QUESTION + "No", False)
    assert _text("ccs_yes") == ("PR" + QUESTION + "Yes", True)
    assert _text("ccs_no") == ("PR" + QUESTION + "No", True)
    assert _text("ccs_no_legacy") == ("PR\n\n###Does the responder successfully follow the instruction?\nNo", True)


def test_completion_starts_at_the_response():
    for template in TEMPLATES.values():
        prefix, completion, _ = template("P", "R")
        assert completion.startswith("R") and prefix.startswith("P")


def test_unknown_template_lists_known_names():
    with pytest.raises(UnknownTemplateError, match="unknown text template 'nope'; known templates: ccs_no, "):
        get_template("nope")
