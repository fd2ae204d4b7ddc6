"""AlignTune's own RL algorithms (counterfact_grpo, gbmpo, pace, nmgrpo, metaes) as extensions of TRL's GRPOTrainer.

Each module holds one trainer class, `Trainer(..., algorithm={message: {knob: value}})`, taking its knobs from the
MethodParams messages the method reads (services/trl/methods.py), and `check(params) -> [(field, why)]`, the
request checks of those knobs made before any model loads.
"""
