import pytest
import torch

from stackrnn.optim import Schedule, TrainConfig


def _schedule(total=100, **kw):
    cfg = TrainConfig(lr=1.0, **kw)
    cfg.validate()
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    return Schedule(cfg, opt, total)


def test_linear_warmup_then_constant():
    s = _schedule(lr_schedule="none", warmup_steps=4)
    lrs = []
    for step in range(6):
        s.before_step(step)
        lrs.append(s.lr)
    assert lrs == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_from_lr_to_the_floor():
    s = _schedule(total=10, lr_schedule="cosine", min_lr_ratio=0.1)
    s.before_step(0)
    assert s.lr == pytest.approx(1.0)
    s.before_step(5)
    assert s.lr == pytest.approx(0.1 + 0.9 * 0.5)
    s.before_step(10)
    assert s.lr == pytest.approx(0.1)


def test_plateau_decays_after_patience_and_early_stop_counts():
    s = _schedule(lr_schedule="plateau", patience=1, lr_decay=0.5)
    assert s.after_eval(3.0) and s.since_best == 0
    assert not s.after_eval(3.5)  # 1 bad evaluation: within patience
    s.before_step(0)
    assert s.lr == 1.0
    assert not s.after_eval(3.2)  # 2 in a row: decay
    s.before_step(1)
    assert s.lr == 0.5 and s.since_best == 2
    assert s.after_eval(2.0) and s.since_best == 0


def test_step_schedule_and_state_round_trip():
    s = _schedule(lr_schedule="step", lr_decay=0.5, lr_decay_start=2)
    for epoch in (1, 2, 3):
        s.after_epoch(epoch)
    s.before_step(0)
    assert s.lr == 0.25
    t = _schedule(lr_schedule="step", lr_decay=0.5, lr_decay_start=2)
    t.load_state_dict(s.state_dict())
    assert (t.base, t.lr, t.best) == (s.base, s.lr, s.best)


@pytest.mark.parametrize("kw", [dict(warmup_steps=-1), dict(min_lr_ratio=1.5), dict(max_bad_steps=0), dict(early_stop=-2)])
def test_bad_settings(kw):
    from stackrnn.config import from_dict
    from stackrnn.errors import InputError

    with pytest.raises(InputError, match=rf"^train\.{next(iter(kw))}: expected "):
        from_dict(TrainConfig, kw, "train")
