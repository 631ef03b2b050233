"""Where a finished job's model is (``job:<name-or-id>`` endpoint models): its object-store output,
which the serving pods fetch; submitted to the fake API server."""

import pytest

from unijob.errors import UsageError


@pytest.mark.parametrize("k8s", [{}, {"api": "jobset", "gang": "volcano"}])
def test_the_output_uri_is_the_model(adapter, fake, spec_of, k8s):
    h = adapter.submit(adapter.plan(spec_of(output="s3://b/out/run1", k8s=k8s), "sub-model"))
    assert adapter.model_artifact(h) == "s3://b/out/run1"


def test_no_output_or_a_pvc_output_is_an_error(adapter, fake, spec_of):
    h = adapter.submit(adapter.plan(spec_of(output=None), "sub-none"))
    with pytest.raises(UsageError, match="wrote no model: it had no output"):
        adapter.model_artifact(h)
    h = adapter.submit(adapter.plan(spec_of(output="pvc://models/run1"), "sub-pvc"))
    with pytest.raises(UsageError, match="PersistentVolumeClaim, which serving pods do not mount"):
        adapter.model_artifact(h)
