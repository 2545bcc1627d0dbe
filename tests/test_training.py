"""The training loop: configuration, clipping, weighting, checkpoints, reproducibility, variants."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist

from hdfsad.models import ModelConfig, build_model
from hdfsad.preprocessing import encode, training_arrays
from hdfsad.reader import ArrayBatches
from hdfsad.training import (EarlyStopping, EpochStats, GradientClipper, TrainConfig, TrainState,
                             array_source, class_weights, evaluate, fit, make_optimizer, train_epoch,
                             weighted_loss)
from hdfsad.variants import load_variant, variant_from_dict, variant_names

torch.set_num_threads(1)
SMALL = ModelConfig(lstm_units=(6,))


def data(n: int = 40, seed: int = 0, long: bool = False) -> tuple[list[list[int]], np.ndarray]:
    """Odd rows are anomalies (event 3 among the last three events); ``long`` gives lengths > 19."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for i in range(n):
        size = int(rng.integers(20, 26)) if long else int(rng.integers(3, 12))
        s = rng.choice([4, 8, 21], size=size).tolist()
        if i % 2:
            s[-int(rng.integers(1, 4))] = 3
        seqs.append(s)
        labels.append(i % 2)
    return seqs, np.array(labels)


def weights_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# configuration -----------------------------------------------------------------------------------

@pytest.mark.parametrize("data_, message", [
    ({"class_weight": "auto"}, "train.class_weight: expected one of ['balanced', 'none'], got 'auto'"),
    ({"monitor": "val_auc"}, "train.monitor: expected one of ['loss', 'val_loss', 'val_accuracy'"),
    ({"clip_norm_scope": "layer"}, "train.clip_norm_scope: expected one of ['global', 'per_parameter']"),
    ({"batch_size": 0}, "train.batch_size: expected an integer >= 1, got 0"),
    ({"clip_value": -1}, "train.clip_value: expected a number > 0 (or null where allowed), got -1"),
    ({"dedup": 1}, "train.dedup: expected true or false, got 1"),
    ({"lr": 0.1}, "train: unknown key(s) ['lr']; allowed keys: ['batch_size', 'epochs', 'learning_rate'"),
])
def test_train_config_errors(data_, message):
    with pytest.raises(ValueError) as err:
        TrainConfig.from_dict(data_)
    assert message in str(err.value)


def test_balanced_class_weights_as_the_study():
    w = class_weights(np.array([374008, 11281]), "balanced")
    assert w.tolist() == pytest.approx([0.5151, 17.0769], abs=1e-4)
    assert class_weights(np.array([5, 5]), "none") is None
    with pytest.raises(ValueError) as err:
        class_weights(np.array([10, 0]), "balanced")
    assert "class_weight 'balanced': the training data holds no anomaly row" in str(err.value)


# gradients ---------------------------------------------------------------------------------------

def gradients_seen(clipper, scale: float = 1e4) -> list[list[torch.Tensor]]:
    """Gradients at each step (after clipping) of one epoch with a loss blown up by ``scale``."""
    seqs, y = data(16)
    model = build_model(SMALL, seed=0)
    seen: list[list[torch.Tensor]] = []
    train_epoch(model, ArrayBatches(encode(seqs, 19), y, batch_size=8).batches(0), make_optimizer(model, TrainConfig()),
                class_weight=torch.tensor([scale, scale]), clipper=clipper,
                on_step=lambda m: seen.append([p.grad.clone() for p in m.parameters() if p.grad is not None]))
    return seen


def test_clipping_by_value_bounds_every_gradient():
    raw = gradients_seen(None)
    assert max(g.abs().max().item() for step in raw for g in step) > 0.5
    clipped = gradients_seen(GradientClipper.from_config(TrainConfig(clip_value=0.5)))
    assert len(clipped) == 2
    assert all(g.abs().max().item() <= 0.5 for step in clipped for g in step)


def test_clipping_by_norm_bounds_the_norm():
    def total(step):
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in step])).item()

    assert min(total(step) for step in gradients_seen(None)) > 1.0
    glob = gradients_seen(GradientClipper.from_config(TrainConfig(clip_norm=1.0)))
    assert all(total(step) <= 1.0 + 1e-5 for step in glob)
    assert all(total(step) >= 1.0 - 1e-5 for step in glob)  # clipped to the bound, not below
    per = gradients_seen(GradientClipper.from_config(TrainConfig(clip_norm=1.0, clip_norm_scope="per_parameter")))
    assert all(torch.linalg.vector_norm(g).item() <= 1.0 + 1e-5 for step in per for g in step)
    assert any(total(step) > 1.0 + 1e-3 for step in per)  # per tensor, so the total may exceed 1


# weighting ---------------------------------------------------------------------------------------

def test_dedup_weighted_training_gives_the_same_loss():
    seqs, y = data(12)
    seqs, y = seqs * 4 + seqs[:5], np.r_[np.tile(y, 4), y[:5]]  # many duplicates, uneven counts
    plain_cfg = TrainConfig(batch_size=len(y), epochs=3, patience=None, seed=0)
    dedup_cfg = TrainConfig(batch_size=len(y), epochs=3, patience=None, seed=0, dedup=True)
    plain_src, dedup_src = array_source(seqs, y, 19, plain_cfg), array_source(seqs, y, 19, dedup_cfg)
    assert len(dedup_src) == 12 and dedup_src.w.sum() == len(y)
    np.testing.assert_allclose(plain_src.label_counts(), dedup_src.label_counts())

    # the objective itself, on the same weights
    model = build_model(SMALL, seed=0)
    cw = class_weights(plain_src.label_counts(), "balanced")
    with torch.no_grad():
        plain, _ = weighted_loss(model(torch.from_numpy(plain_src.x)), torch.from_numpy(plain_src.y), None, cw)
        dedup, _ = weighted_loss(model(torch.from_numpy(dedup_src.x)), torch.from_numpy(dedup_src.y),
                                 torch.from_numpy(dedup_src.w / dedup_src.w.mean()), cw)
    assert dedup.item() == pytest.approx(plain.item(), rel=1e-5)

    # and the training run (full batches: the same gradient at every step)
    a, b = build_model(SMALL, seed=0), build_model(SMALL, seed=0)
    ha = fit(a, plain_src, plain_cfg).history
    hb = fit(b, dedup_src, dedup_cfg).history
    assert [r["loss"] for r in hb] == pytest.approx([r["loss"] for r in ha], rel=1e-4)
    assert ha[-1]["loss"] < ha[0]["loss"]
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=1e-4, atol=1e-5)


def test_dedup_passes_repeat_the_distinct_pairs_each_shuffled_anew():
    seqs, y = data(12)
    cfg = TrainConfig(batch_size=5, dedup=True, dedup_passes=3, seed=0)
    src = array_source(seqs * 3, np.tile(y, 3), 19, cfg)
    assert len(src.y) == 12 and len(src) == 36
    batches = list(src.batches(0))
    rows = np.concatenate([b.x.numpy() for b in batches])
    passes = [rows[i * 12:(i + 1) * 12] for i in range(3)]
    assert all(sorted(map(tuple, p.tolist())) == sorted(map(tuple, src.x.tolist())) for p in passes)
    assert not all(np.array_equal(passes[0], p) for p in passes[1:])
    w = np.concatenate([b.w.numpy() for b in batches])
    assert w.mean() == pytest.approx(1.0) and sorted(w[:12]) == pytest.approx(sorted(src.w / src.w.mean()))
    assert len(array_source(seqs, y, 19, TrainConfig(dedup_passes=3))) == 12  # passes need dedup
    with pytest.raises(ValueError) as err:
        TrainConfig(dedup_passes=0)
    assert "train.dedup_passes: expected an integer >= 1, got 0" in str(err.value)


# loop features -----------------------------------------------------------------------------------

def test_same_seed_gives_identical_weights():
    seqs, y = data(24)
    cfg = TrainConfig(batch_size=8, epochs=2, seed=7)
    runs = []
    for seed in (7, 7, 8):
        model = build_model(ModelConfig(lstm_units=(6, 5), dropout=0.3), seed=seed)
        fit(model, array_source(seqs, y, 19, TrainConfig(batch_size=8, epochs=2, seed=seed)), cfg)
        runs.append(weights_of(model))
    assert same_weights(runs[0], runs[1])
    assert not same_weights(runs[0], runs[2])


class FailingSource:
    """Delegates to a source but fails when ``fail_at`` is reached (a crash mid-run)."""

    def __init__(self, inner, fail_at: int):
        self.inner, self.fail_at = inner, fail_at

    def label_counts(self):
        return self.inner.label_counts()

    def batches(self, epoch):
        if epoch == self.fail_at:
            raise RuntimeError(f"crash at epoch {epoch}")
        return self.inner.batches(epoch)


def test_resume_from_checkpoint_continues_at_the_right_epoch(tmp_path):
    seqs, y = data(24)
    val = (encode(seqs[:8], 19), y[:8])
    mcfg = ModelConfig(lstm_units=(6, 5), dropout=0.3)
    cfg = TrainConfig(batch_size=8, epochs=4, seed=3, monitor="val_loss", patience=3)
    src = array_source(seqs, y, 19, cfg)

    straight = build_model(mcfg, seed=3)
    full = fit(straight, src, cfg, validation=val, checkpoint_path=tmp_path / "a.pt")

    crashed = build_model(mcfg, seed=3)
    with pytest.raises(RuntimeError, match="crash at epoch 2"):
        fit(crashed, FailingSource(src, 2), cfg, validation=val, checkpoint_path=tmp_path / "b.pt")
    resumed_model = build_model(mcfg, seed=99)  # the checkpoint replaces these weights
    lines: list[str] = []
    resumed = fit(resumed_model, src, cfg, validation=val, checkpoint_path=tmp_path / "b.pt", log=lines.append)
    assert resumed.resumed_from == 2 and resumed.epochs_done == 4
    assert lines[0] == "resumed from checkpoint after epoch 2"
    assert [line.split("  ")[0] for line in lines[1:]] == ["epoch 3/4", "epoch 4/4"]
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    assert resumed.best_epoch == full.best_epoch
    assert same_weights(weights_of(resumed_model), weights_of(straight))

    # a finished run resumes as finished; a different configuration is refused
    again = fit(build_model(mcfg, seed=3), src, cfg, validation=val, checkpoint_path=tmp_path / "b.pt")
    assert again.epochs_done == 4 and len(again.history) == 4
    with pytest.raises(ValueError) as err:
        fit(build_model(mcfg, seed=3), src, TrainConfig(batch_size=16, epochs=4, seed=3, monitor="val_loss",
                                                        patience=3), validation=val, checkpoint_path=tmp_path / "b.pt")
    assert "was written with another configuration (batch_size: 8 -> 16)" in str(err.value)
    assert "delete the checkpoint or pass resume=False" in str(err.value)
    (tmp_path / "c.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError) as err:
        fit(build_model(mcfg, seed=3), src, cfg, validation=val, checkpoint_path=tmp_path / "c.pt")
    assert f"cannot read checkpoint {tmp_path / 'c.pt'}" in str(err.value)


def test_early_stopping_stops_and_restores_the_best_weights():
    model = build_model(SMALL, seed=0)
    state = TrainState(model, make_optimizer(model, TrainConfig()))
    stop = EarlyStopping("val_loss", patience=2, restore_best=True)
    kept = None
    for epoch, value in enumerate([1.0, 0.5, 0.6, 0.7], start=1):
        state.epoch = epoch
        with torch.no_grad():
            model.head.bias.fill_(float(epoch))
        stop.on_epoch_end(state, {"val_loss": value})
        if epoch == 2:
            kept = weights_of(model)
        assert state.stop == (epoch == 4)
    stop.on_train_end(state)
    assert stop.best_epoch == 2 and same_weights(weights_of(model), kept)
    maximize = EarlyStopping("val_f1", patience=1)
    maximize.on_epoch_end(state, {"val_f1": 0.5})
    maximize.on_epoch_end(state, {"val_f1": float("nan")})
    assert maximize.best == 0.5 and state.stop


def test_fit_logs_and_checks_monitor(tmp_path):
    seqs, y = data(16)
    cfg = TrainConfig(batch_size=8, epochs=2, monitor="val_f1")
    with pytest.raises(ValueError) as err:
        fit(build_model(SMALL, seed=0), array_source(seqs, y, 19, cfg), cfg)
    assert "train.monitor 'val_f1' needs validation data" in str(err.value)
    lines: list[str] = []
    result = fit(build_model(SMALL, seed=0), array_source(seqs, y, 19, cfg), cfg,
                 validation=(encode(seqs, 19), y), log=lines.append)
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2  loss ")
    assert "val_macro_f1" in lines[0] and "samples/s" in lines[0]
    assert set(result.history[0]) >= {"loss", "samples_per_s", "val_loss", "val_f1", "val_pr_auc"}
    assert result.history[0]["samples"] == 16
    m = evaluate(build_model(SMALL, seed=0), encode(seqs, 19), y)
    assert 0 <= m["accuracy"] <= 1 and m["loss"] > 0


# variants ----------------------------------------------------------------------------------------

STUDY = ["v0_baseline", "v1_improved", "v2_grid", "v3_bn", "v4_gc", "v5_gn", "v6_bn_gn", "v7_da", "v8_da_gn"]
#: Variant files beyond the study's nine: a longer window, and the grid's best configuration once
#: `hdfsad grid-search` has run on the reference data.
BEYOND = {"v9_window32", "grid_best"}


def test_the_nine_variants_are_the_study():
    assert [n for n in variant_names() if n not in BEYOND] == STUDY
    v = {name: load_variant(name) for name in STUDY}
    assert v["v0_baseline"].model.lstm_units == (64,) and v["v0_baseline"].train.class_weight == "none"
    assert (v["v0_baseline"].train.batch_size, v["v0_baseline"].train.epochs) == (10, 2)
    assert v["v1_improved"].model.lstm_units == (64, 64) and v["v1_improved"].train.batch_size == 24
    assert all(v[n].model.lstm_units == (72, 72) and v[n].train.batch_size == 32 and v[n].train.epochs == 15
               and v[n].train.class_weight == "balanced" for n in STUDY[2:])
    assert [n for n in STUDY if v[n].model.batch_norm] == ["v3_bn", "v6_bn_gn"]
    assert [n for n in STUDY if v[n].train.clip_value] == ["v4_gc"] and v["v4_gc"].train.clip_value == 0.5
    assert [n for n in STUDY if v[n].train.clip_norm] == ["v5_gn", "v6_bn_gn", "v8_da_gn"]
    assert [n for n in STUDY if v[n].train.extra_windows] == ["v7_da", "v8_da_gn"]
    assert all(v[n].model.embedding_dim == 3 and v[n].model.max_len == 19 for n in STUDY)
    assert all(v[n].train.monitor == "loss" and v[n].train.patience == 5 for n in STUDY)
    assert [n for n in STUDY if not v[n].train.dedup] == ["v0_baseline"]


def test_the_long_window_variant_is_v2_with_32_events():
    v2, v9 = load_variant("v2_grid"), load_variant("v9_window32")
    assert v9.model.max_len == 32 and v2.model.max_len == 19
    assert v9.model.to_dict() == {**v2.model.to_dict(), "max_len": 32}
    assert v9.train == v2.train


@pytest.mark.parametrize("name", STUDY)
def test_every_variant_builds_and_trains_one_epoch(name):
    variant = load_variant(name, overrides={"train": {"epochs": 1}})
    seqs, y = data(40, long=True)
    model = build_model(variant.model, seed=0)
    src = array_source(seqs, y, variant.model.max_len, variant.train)
    result = fit(model, src, variant.train, validation=(encode(seqs[:10], 19), y[:10]))
    assert result.epochs_done == 1 and math.isfinite(result.history[0]["loss"])
    x, _, _ = training_arrays(seqs, y, 19, variant.train.extra_windows, variant.train.dedup)
    extra = sum(min(3, len(s) - 19) for s in seqs) if variant.train.extra_windows else 0
    assert len(x) <= 40 + extra and (variant.train.dedup or len(x) == 40 + extra)
    passes = variant.train.dedup_passes if variant.train.dedup else 1
    assert result.history[0]["samples"] == len(x) * passes


def test_variant_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError) as err:
        variant_from_dict({"name": "x", "modle": {}}, "x.yaml")
    assert "x.yaml: unknown key(s) ['modle']; allowed keys: ['name', 'description', 'model', 'train']" in str(err.value)
    with pytest.raises(ValueError) as err:
        variant_from_dict({"name": "x", "train": {"clip": 1}}, "x.yaml")
    assert "x.yaml: train: unknown key(s) ['clip']; allowed keys: ['batch_size'" in str(err.value)
    (tmp_path / "v9.yaml").write_text("name: other\n")
    with pytest.raises(ValueError) as err:
        load_variant(tmp_path / "v9.yaml")
    assert "name 'other' differs from the file name 'v9'" in str(err.value)
    with pytest.raises(ValueError) as err:
        load_variant("v99", directory=tmp_path)
    assert "variant 'v99' not found" in str(err.value) and "known variants: ['v9']" in str(err.value)


# the contract the DDP wrapper relies on ----------------------------------------------------------

@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built in")
def test_fit_runs_a_ddp_wrapped_model(tmp_path):
    """One-process gloo group: a DDP-wrapped model, a sharded source, summed stats, Join."""
    from torch.distributed.algorithms.join import Join
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        def all_reduce(stats: EpochStats) -> EpochStats:
            t = stats.to_tensor()
            dist.all_reduce(t)
            return EpochStats.from_tensor(t, stats.seconds)

        seqs, y = data(24)
        cfg = TrainConfig(batch_size=8, epochs=2, seed=1)
        model = DDP(build_model(ModelConfig(lstm_units=(6,), batch_norm=True), seed=1))
        src = array_source(seqs, y, 19, cfg, rank=dist.get_rank(), world_size=dist.get_world_size())

        class Joined:  # tolerate uneven batch counts across ranks
            def __init__(self, inner):
                self.inner = inner

            def label_counts(self):
                return self.inner.label_counts()

            def batches(self, epoch):
                with Join([model]):
                    yield from self.inner.batches(epoch)

        result = fit(model, Joined(src), cfg, reduce_stats=all_reduce, is_main=dist.get_rank() == 0,
                     checkpoint_path=tmp_path / "ckpt.pt")
        assert result.epochs_done == 2 and result.history[0]["samples"] == 24
        plain = build_model(ModelConfig(lstm_units=(6,), batch_norm=True), seed=1)
        fit(plain, array_source(seqs, y, 19, cfg), cfg)
        assert same_weights(weights_of(model.module), weights_of(plain))
        ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
        assert not any(k.startswith("module.") for k in ckpt["model"])
    finally:
        dist.destroy_process_group()
