from dfcore.bench import stage_parameters


def test_benchmark_notebooks_get_their_parameters_layered_as_make_layers_them():
    params = stage_parameters("02_mim_pretrain", "smoke", reports_root="/tmp/x")
    assert params["mim_epochs"] == 1 and params["image_size"] == 64  # the smoke profile's values won
    assert params["backbone"] == "resnet10t" and params["seed"] == 0  # the notebook's own file, common.yaml
    assert params["profile"] == "smoke" and params["reports_root"] == "/tmp/x"
