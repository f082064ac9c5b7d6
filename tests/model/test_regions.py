"""Region names are checked offline against botocore's partition data (issue 20, item 3)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from rolechain.executor.options import RunOptions
from rolechain.model.regions import known_regions, region_problem
from rolechain.model.schema import ChainFile


def test_known_regions_come_from_every_partition() -> None:
    regions = known_regions()
    for region in ("us-east-1", "eu-central-1", "cn-north-1", "us-gov-west-1"):
        assert region in regions
    assert not any(r.endswith("-global") for r in regions)


def test_a_misspelt_region_is_refused_with_a_guess() -> None:
    assert region_problem("eu-west-1") is None
    assert region_problem("eu-wset-1") == "unknown region 'eu-wset-1'; did you mean 'eu-west-1'?"
    text = region_problem("xx-nowhere-9")
    assert text is not None
    assert "upgrade botocore" in text


def test_the_model_refuses_unknown_regions_and_keeps_all() -> None:
    base = {
        "principals": {"p": {}},
        "roles": {"r": {"arn": "arn:aws:iam::111111111111:role/r", "trusts": ["p"]}},
    }
    job = {"from": "p", "to": "r", "tasks": ["sts.get_caller_identity"]}
    ChainFile.model_validate({**base, "jobs": {"j": {**job, "regions": "all"}}})
    ChainFile.model_validate({**base, "jobs": {"j": {**job, "regions": ["eu-central-1"]}}})
    with pytest.raises(ValidationError, match="did you mean 'eu-west-1'"):
        ChainFile.model_validate({**base, "jobs": {"j": {**job, "regions": ["eu-wset-1"]}}})
    with pytest.raises(ValidationError, match="unknown region"):
        ChainFile.model_validate({**base, "settings": {"region": "us-eest-1"}})


def test_run_options_refuse_unknown_regions() -> None:
    assert RunOptions(regions=("all",)).regions == ("all",)
    with pytest.raises(ValueError, match="did you mean 'eu-west-1'"):
        RunOptions(regions=("eu-wset-1",))


def test_checking_regions_does_not_import_botocore() -> None:
    code = (
        "import sys; from rolechain.model.regions import region_problem; "
        "assert region_problem('eu-west-1') is None; "
        "assert region_problem('eu-wset-1'); "
        "assert 'botocore' not in sys.modules, 'botocore imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
