"""Grid and suite resolution: what a bench or suite run fills in from presets and defaults."""

import pytest

from dataprune import cli
from dataprune.presets import GRID_OPTIONS, get_preset, resolve_grid, suite_runs, suite_settings


def test_given_options_win_then_the_preset_then_the_defaults():
    preset = {"epochs": 15, "surrogate_epochs": 15, "checkpoints": "1,5,9", "methods": ["random"], "seeds": 3}
    got = resolve_grid({"lr": 0.2}, preset, {"lr": 0.05, "batch_size": 64, "seeds": 1})
    assert set(got) == set(GRID_OPTIONS)
    assert got["lr"] == 0.2 and got["batch_size"] == 64 and got["epochs"] == 15
    assert got["seeds"] == [0, 1, 2] and got["checkpoints"] == "1,5,9" and got["surrogate_epochs"] == 15
    assert got["policy"] == "class_balanced" and got["partitions"] == 1 and got["retrain_length"] == "epochs"


def test_a_given_epoch_count_drops_the_presets_surrogate_length_and_checkpoints():
    preset = {"epochs": 15, "surrogate_epochs": 15, "checkpoints": "1,5,9", "methods": ["random"]}
    got = resolve_grid({"epochs": 40}, preset, {})
    assert got["epochs"] == 40 and got["surrogate_epochs"] is None and got["checkpoints"] is None
    with pytest.raises(ValueError, match="name the methods"):
        resolve_grid({}, {}, {})


def test_suite_runs_take_each_settings_data_unless_the_caller_chose():
    runs = suite_runs("robustness", ["mnist5k-cnn-pair40"])
    (run,) = runs
    setting = suite_settings("robustness", ["mnist5k-cnn-pair40"])[0]
    assert run["name"] == "mnist5k-cnn-pair40" and run["preset"] == get_preset(setting["preset"])
    assert run["options"]["label_noise"] == 0.4 and run["options"]["label_noise_kind"] == "pair"
    assert run["options"]["methods"] == setting["methods"] and run["options"]["model"] == "cnn"
    mine = suite_runs("robustness", ["mnist5k-cnn-pair40"], {"methods": ["random"], "seeds": [7],
                                                            "val_split": 0.3})[0]["options"]
    assert mine["methods"] == ["random"] and mine["seeds"] == [7] and "val_split" not in mine


def test_cli_suite_runs_one_grid_per_setting_into_its_own_folder(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "_run_grid", lambda args, log, defaults, title, preset: seen.append(
        (args.out, args.dataset, args.label_noise, args.model, args.methods, title)))
    monkeypatch.setattr("dataprune.report.write_suite_summary", lambda out, names: None)
    assert cli.main(["bench", "--suite", "robustness", "--only", "digits-*-sym40", "--methods", "random",
                     "--out", str(tmp_path), "--quiet"]) == 0
    assert seen and all(out == str(tmp_path / f"digits-{model}-sym40") and ds == "digits" and noise == 0.4
                        and methods == ["random"] for out, ds, noise, model, methods, _ in seen)


def test_init_from_env_in_one_process_changes_nothing(monkeypatch):
    from dataprune.distributed import init_from_env, is_distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_from_env("cpu") == "cpu" and init_from_env(None) is None and not is_distributed()
