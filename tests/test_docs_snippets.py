"""The docs' Python snippets run, and the docs' links and citations lead somewhere.

Every fenced ```python block of docs/*.md and README.md runs as its own program (a fresh
interpreter, so one snippet's registrations, imports or environment never leak into another or
into the rest of the suite), with the current directory a temporary folder, `GENIES_HOME` a
temporary folder and `GENIES_DATA_DIR` a small synthetic data folder made by
`genies.data.synth.write_synthetic`. A snippet is written to a file padded so that its line
numbers are the markdown's: a traceback points at the line of the page to fix.

An HTML comment on the line before a block changes how it runs (use it sparingly; a snippet that
does not run is a snippet that rots):

- `<!-- snippet: slow -->`: runs only with the `slow` tests (it needs the embedded model for a
  long while);
- `<!-- snippet: data -->`: needs the real GENIES data (`GENIES_DATA_DIR`), marked `data`;
- `<!-- snippet: skip (reason) -->`: never runs; the reason is reported as the skip's reason.

Words combine: `<!-- snippet: slow, data -->`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
SNIPPET_TIMEOUT_S = 600
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
DIRECTIVE = re.compile(r"^\s*<!--\s*snippet:\s*(?P<body>.*?)\s*-->\s*$")
DIRECTIVE_WORDS = re.compile(r"(?P<word>slow|data|skip)(?:\s*\((?P<reason>[^)]*)\))?\s*(?:,|$)")


@dataclass(frozen=True)
class Snippet:
    """One fenced Python block: where it is, its code, and how its directive says to run it."""

    page: Path
    line: int  # 1-based line of the first code line in the page
    code: str
    slow: bool = False
    data: bool = False
    skip: str | None = None  # the reason, when the block must never run

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def parse_directive(text: str, where: str) -> dict[str, object]:
    """`slow`, `data`, `skip (reason)` separated by commas; anything else is an error, so a typo in
    a directive cannot silently run (or silently skip) a block."""
    found: dict[str, object] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = DIRECTIVE_WORDS.match(text, position)
        if match is None:
            raise ValueError(f"{where}: cannot read snippet directive {text!r}; "
                             "expected slow, data or skip (reason)")
        word = match["word"]
        if word == "skip":
            if not (match["reason"] or "").strip():
                raise ValueError(f"{where}: `skip` needs a reason: <!-- snippet: skip (why) -->")
            found["skip"] = match["reason"].strip()
        else:
            found[word] = True
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return found


def find_snippets(page: Path, text: str | None = None) -> list[Snippet]:
    """The ```python blocks of a markdown page, with the directive of the line before each.

    A directive that is not followed by a ```python block is an error: it was meant for a
    block and would otherwise be ignored."""
    lines = (page.read_text(encoding="utf-8") if text is None else text).splitlines()
    snippets: list[Snippet] = []
    pending: tuple[int, dict[str, object]] | None = None
    i = 0
    while i < len(lines):
        directive = DIRECTIVE.match(lines[i])
        if directive:
            pending = (i + 1, parse_directive(directive["body"], f"{page.name}:{i + 1}"))
            i += 1
            continue
        fence = FENCE.match(lines[i])
        if fence is None:
            if pending is not None and lines[i].strip():
                raise ValueError(f"{page.name}:{pending[0]}: a snippet directive must sit on the line before a "
                                 "```python block")
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"{page.name}:{i + 1}: a ``` fence is never closed")
        options = pending[1] if pending is not None else {}
        if fence["lang"] == "python":
            indent = len(fence["indent"])
            code = "\n".join(line[indent:] for line in lines[i + 1:end]) + "\n"
            snippets.append(Snippet(page, i + 2, code, **options))  # type: ignore[arg-type]
        elif pending is not None:
            raise ValueError(f"{page.name}:{pending[0]}: a snippet directive must sit on the line before a "
                             f"```python block, not ```{fence['lang']}")
        pending = None
        i = end + 1
    if pending is not None:
        raise ValueError(f"{page.name}:{pending[0]}: a snippet directive at the end of the page")
    return snippets


def run_snippet(snippet: Snippet, workdir: Path, env: dict[str, str],
                timeout_s: float = SNIPPET_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run one snippet as a program in `workdir`; its file is padded so tracebacks name the
    page's own line numbers."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / f"{snippet.page.stem}_line{snippet.line}.py"
    script.write_text("\n" * (snippet.line - 1) + snippet.code, encoding="utf-8")
    return subprocess.run([sys.executable, script.name], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout_s)


def failure_message(snippet: Snippet, result: subprocess.CompletedProcess[str]) -> str:
    """Where the snippet is, its exit status and the end of its output, with the page's lines."""
    output = (result.stdout + result.stderr).strip()
    script = re.escape(f"{snippet.page.stem}_line{snippet.line}.py")
    output = re.sub(rf'[^"\s]*{script}', str(snippet.page.relative_to(ROOT)), output)
    return f"the snippet at {snippet.name} exited with {result.returncode}:\n{output[-4000:]}"


def _params() -> list[object]:
    params = []
    for page in PAGES:
        for snippet in find_snippets(page):
            marks = []
            if snippet.skip is not None:
                marks.append(pytest.mark.skip(reason=f"docs snippet {snippet.name}: {snippet.skip}"))
            if snippet.slow:
                marks.append(pytest.mark.slow)
            if snippet.data:
                marks.append(pytest.mark.data)
            params.append(pytest.param(snippet, id=snippet.name, marks=marks))
    return params


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic distributions folder (12 prompts per split) that snippets read as their
    data root."""
    from genies.data.synth import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("snippet-data"), size=12)


@pytest.fixture(scope="session")
def snippet_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One temporary GENIES_HOME for every snippet of the session: the converted embedded model
    and the synthetic folders are made once, and nothing reaches the user's cache."""
    return tmp_path_factory.mktemp("snippet-home")


@pytest.mark.parametrize("snippet", _params())
def test_docs_snippet_runs(snippet: Snippet, tmp_path: Path, snippet_home: Path, synthetic_data_dir: Path,
                           request: pytest.FixtureRequest) -> None:
    env = {**os.environ, "GENIES_HOME": str(snippet_home), "PYTHONUNBUFFERED": "1"}
    if snippet.data:
        env["GENIES_DATA_DIR"] = str(request.getfixturevalue("genies_data_dir"))
    else:
        env["GENIES_DATA_DIR"] = str(synthetic_data_dir)
    result = run_snippet(snippet, tmp_path / "cwd", env)
    if result.returncode != 0:
        pytest.fail(failure_message(snippet, result), pytrace=False)


def test_the_pages_have_snippets() -> None:
    """The collector sees the blocks (a fence spelt differently would otherwise test nothing)."""
    found = {page.name: len(find_snippets(page)) for page in PAGES}
    assert found["data.md"] >= 2 and found["interventions.md"] >= 2 and found["running.md"] >= 1, found


def test_a_broken_snippet_fails_at_its_page_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\nText.\n\n```python\nx = 1\nundefined_name\n```\n", encoding="utf-8")
    (snippet,) = find_snippets(page, page.read_text(encoding="utf-8"))
    assert snippet.line == 6
    result = run_snippet(snippet, tmp_path / "cwd", dict(os.environ), timeout_s=120)
    assert result.returncode != 0
    assert "line 7" in result.stderr and "NameError" in result.stderr


def test_directives() -> None:
    page = Path("page.md")
    text = ("<!-- snippet: slow, data -->\n```python\npass\n```\n\n"
            "<!-- snippet: skip (signatures, not a program) -->\n```python\nnot python\n```\n\n"
            "```python\npass\n```\n")
    slow, skipped, plain = find_snippets(page, text)
    assert (slow.slow, slow.data, slow.skip) == (True, True, None)
    assert skipped.skip == "signatures, not a program" and not skipped.slow
    assert (plain.slow, plain.data, plain.skip) == (False, False, None)
    for bad in ("<!-- snippet: sloww -->\n```python\npass\n```\n",     # a typo
                "<!-- snippet: skip -->\n```python\npass\n```\n",      # a skip without a reason
                "<!-- snippet: slow -->\n\nSome text.\n```python\npass\n```\n",  # not before a block
                "<!-- snippet: slow -->\n```bash\nls\n```\n"):         # before another language
        with pytest.raises(ValueError):
            find_snippets(page, bad)


# ---- links and citations -----------------------------------------------------------------------

LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
CITATION = re.compile(r"\b(?P<target>(?:docs/)?[\w.-]+\.md#[\w-]+)")


def heading_anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings (lower case; punctuation other than - and _
    dropped; spaces become -), plus explicit `<a id="...">` anchors."""
    text = page.read_text(encoding="utf-8")
    anchors, counts = set(), {}
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if in_fence or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip()
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    anchors.update(re.findall(r'<a id="([^"]+)"', text))
    return anchors


def test_links_between_pages_resolve() -> None:
    problems = []
    for page in PAGES:
        for match in LINK.finditer(page.read_text(encoding="utf-8")):
            target = match["target"]
            if "://" in target or target.startswith("mailto:"):
                continue
            relative, _, anchor = target.partition("#")
            path = (page.parent / relative).resolve() if relative else page
            if not path.exists():
                problems.append(f"{page.name}: {target}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in heading_anchors(path):
                problems.append(f"{page.name}: {target}: no heading with that anchor in {path.name}")
    assert not problems, "\n".join(problems)


def test_code_citations_of_the_docs_resolve() -> None:
    """`docs/methods.md#differential-elicitation` in a docstring or message names a real section."""
    problems = []
    for source in sorted((ROOT / "src").rglob("*.py")):
        for match in CITATION.finditer(source.read_text(encoding="utf-8")):
            path, _, anchor = match["target"].partition("#")
            page = ROOT / (path if path.startswith("docs/") else f"docs/{path}")
            if not page.exists():
                problems.append(f"{source.relative_to(ROOT)}: {match['target']}: no such page")
            elif anchor not in heading_anchors(page):
                problems.append(f"{source.relative_to(ROOT)}: {match['target']}: no such section")
    assert not problems, "\n".join(problems)


def test_plugin_entry_points_are_named_like_their_methods() -> None:
    """An entry point of the `genies.interventions` group in the docs carries the name the method
    registers: genies skips an entry point whose name is already registered, so a different name
    is loaded again on every lookup and never matches the method's name."""
    text = (ROOT / "docs" / "interventions.md").read_text(encoding="utf-8")
    registered = set(re.findall(r'@register\("([\w-]+)"', text))
    group = re.search(r'\[project\.entry-points\."genies\.interventions"\]\n(?P<body>(?:[^\n\[`]+\n)+)', text)
    assert group is not None, "docs/interventions.md shows no entry-point table"
    names = re.findall(r"^\s*([\w-]+)\s*=", group["body"], re.M)
    assert names and set(names) <= registered, (names, registered)


def test_nothing_cites_the_private_spec() -> None:
    """Users never see the project's private specification, so docs and code cite docs/ pages
    (docs/methods.md for the definitions) or state the fact itself."""
    cite = re.compile(r"\bSPEC\b")
    files = [*sorted((ROOT / "src").rglob("*.py")), *PAGES]
    hits = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in files
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if cite.search(line)]
    assert not hits, "\n".join(hits)
