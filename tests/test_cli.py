import json
import subprocess
import sys


def test_bench_recovery_prints_one_json_object_per_setting():
    out = subprocess.run(
        [sys.executable, "-m", "srpo.cli", "bench", "recovery", "--json", "--samples", "20000"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert {(r["sigma"], r["d"]) for r in rows} == {
        (s, d) for s in (0.5, 0.75, 0.95) for d in (0.025, 0.075)
    }
    for row in rows:
        assert set(row) == {"sigma", "d", "mse_naive", "mse_direct_align"}
        assert row["mse_direct_align"] < row["mse_naive"]


def test_cli_errors_are_one_line(capsys):
    from srpo.cli import main

    assert main(["bench", "recovery", "--samples", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("srpo: error:") and "\n" not in err


def test_bench_step_reports_both_medians_and_their_ratio():
    out = subprocess.run(
        [sys.executable, "-m", "srpo.cli", "bench", "step", "--json", "--repeats", "1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["update_seconds"] > 0 and result["bare_seconds"] > 0
    expected = result["update_seconds"] / result["bare_seconds"]
    assert abs(result["ratio"] - expected) < 0.01
