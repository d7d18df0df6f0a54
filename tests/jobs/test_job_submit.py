"""`ray job submit` of a project job script to a real `ray start --head` cluster on 127.0.0.1."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ray_cluster import local_cluster, submit  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_job_submit_with_token_auth():
    with local_cluster() as cluster:
        ok = submit(cluster, ["python", "jobs/cluster_check.py", "--rows", "12"])
        assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
        assert "cluster_check ok rows=12 bad=0 nodes=1 cpus=2" in ok.stdout
        # Without the token the cluster refuses the submission.
        denied = submit(cluster, ["python", "-c", "print('should not run')"], extra_env={"RAY_AUTH_TOKEN": "wrong"})
        assert denied.returncode != 0
        assert "should not run" not in denied.stdout
