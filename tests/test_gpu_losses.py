"""The GPU loss-timing script runs end to end in its CPU smoke mode."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import gpu_losses  # noqa: E402
import launches  # noqa: E402


def test_smoke_mode_times_every_row_against_its_peer(capsys):
    rows = [launches.ROWS[0], launches.ROWS[1]]
    results = []
    for batch_size in (16,):
        for row in rows:
            data = gpu_losses._inputs(batch_size, 8, gpu_losses.torch.device("cpu"))
            timing = gpu_losses.time_step(row.rankssl(*data), gpu_losses.torch.device("cpu"), "bf16", repeats=1)
            assert timing["device_ms"] > 0 and timing["host_ms"] > 0
            results.append(dict(row=row.name, peer=row.peer_name, batch_size=batch_size, dtype="bf16",
                                **timing, peer_device_ms=1.0, peer_host_ms=1.0))
    table = gpu_losses.markdown(results)
    assert "| 16 | bf16 | GroCoLoss (K=10) |" in table and "S2R2Loss binned" in table


def test_cli_smoke_mode(capsys, monkeypatch):
    monkeypatch.setattr(launches, "ROWS", launches.ROWS[:2])
    gpu_losses.main(["--device", "cpu", "--sizes", "64", "--dtypes", "fp32", "--dim", "16", "--repeats", "1"])
    out = capsys.readouterr().out
    assert out.count("| 64 | fp32 |") == 2 and "failed" not in out
    # K = 1,023 is timed only where the batch has enough negatives.
    assert [row.name for row in gpu_losses._rows(1024)][1] == "GroCoLoss (K=1023)"
    assert "GroCoLoss (K=1023)" not in [row.name for row in gpu_losses._rows(256)]
