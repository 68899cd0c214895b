"""The GPU-path targets: each rankssl loss issues no host sync and no more kernel launches
than its peer (benchmarks/launches.py), counted with value checks lazy."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import launches  # noqa: E402

# Rows whose target is not met yet, with the reason (strict: a fix makes the test say so).
NOT_YET = {
    "pml GroCoLoss": "anchors are grouped by their (P, K) sizes on the host (unique/nonzero)",
    "S2R2Loss sorting": "carries relevance through the network layer by layer (the fused P @ v path gave a biased "
                        "estimate, -0.01 to -0.06, and was reverted)",
    "pml S2R2Loss": "no sync, but pml's distance and reducer path costs ~15 launches more than FastAPLoss",
}


def _params():
    for row in launches.ROWS:
        marks = [pytest.mark.xfail(strict=True, reason=NOT_YET[row.name])] if row.name in NOT_YET else []
        yield pytest.param(row, id=row.name, marks=marks)


@pytest.mark.slow
@pytest.mark.parametrize("row", list(_params()))
def test_no_host_sync_and_no_more_launches_than_the_peer(row):
    (result,) = launches.measure([row], batch_size=64, dim=32)
    assert result["syncs"] == 0, result
    assert result["launches"] <= result["peer_launches"], result


def test_markdown_table_lists_every_row():
    table = launches.markdown([dict(row="x", launches=3, syncs=0, peer="y", peer_launches=4, peer_syncs=1)])
    assert "| x | 3 | 0 | y | 4 | 1 | yes |" in table
