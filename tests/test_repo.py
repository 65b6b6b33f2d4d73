"""Repository invariants: CI runs exactly the test command README.md shows."""

from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    marker = ci.index("# TEST-COMMAND (keep identical to README.md)")
    command = ci[marker + 1].strip()
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Tests", 1)[1]
    shown = section.split("```bash", 1)[1].split("```", 1)[0].strip()
    assert command == shown


def test_readme_shows_the_main_job_and_architecture_exists():
    assert "python -m jaxgan.experiments.pggan" in (ROOT / "README.md").read_text()
    assert (ROOT / "docs" / "ARCHITECTURE.md").exists()
