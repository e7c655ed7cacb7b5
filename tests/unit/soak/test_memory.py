"""PostgreSQL's shared buffers segment, read from smaps."""

import pytest

from airscale.soak.memory import smaps_totals

SEGMENT = """7f614c736000-7f618fa3e000 rw-s 00000000 00:01 2653                       /dev/zero (deleted)
Size:            1100832 kB
Rss:               60000 kB
Pss:               30000 kB
"""
SYSV = """7f6193288000-7f6193289000 rw-s 00000000 00:01 753665                     /SYSV00240675 (deleted)
Size:                  4 kB
Pss:                   4 kB
"""
HEAP = """55d0c0a00000-55d0c0b00000 rw-p 00000000 00:00 0                          [heap]
Size:               1024 kB
Pss:                 900 kB
"""
ANON = """7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
Pss:                 100 kB
"""
PRIVATE_ZERO = """7f0000100000-7f0000200000 rw-p 00000000 00:01 12                         /dev/zero (deleted)
Pss:                 50 kB
"""


@pytest.mark.parametrize(
    "text, total_kib, segment_kib",
    [
        pytest.param(SEGMENT, 30000, 30000, id="mmap-segment"),
        pytest.param(SYSV, 4, 4, id="sysv-segment"),
        pytest.param(HEAP + ANON, 1000, 0, id="private-memory-only"),
        pytest.param(HEAP + SEGMENT + ANON + SYSV, 31004, 30004, id="mixed"),
        pytest.param(PRIVATE_ZERO, 50, 0, id="private-mapping-of-dev-zero"),
        pytest.param("", 0, 0, id="empty"),
    ],
)
def test_smaps_totals(text, total_kib, segment_kib):
    assert smaps_totals(text.splitlines(keepends=True)) == (total_kib * 1024, segment_kib * 1024)


def test_smaps_pss_reads_a_live_process_like_psutil():
    import os

    import psutil

    from airscale.soak.memory import smaps_pss

    total, segment = smaps_pss(os.getpid())
    # psutil sums the same Pss lines (smaps_rollup or smaps); the process allocates in between.
    assert abs(total - psutil.Process().memory_full_info().pss) < 8 * 2**20
    assert segment == 0
    with pytest.raises(psutil.NoSuchProcess):
        smaps_pss(2**22 + 12345)
