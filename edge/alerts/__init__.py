"""The alerts wing: how a sensor's scores become alerts at a stated false-alarm rate (numpy + stdlib only).

Kept apart from every model and from the pipeline stack (Merlion's `post_process`), so the trainer
imports the same maths to write the manifest that the agent uses to read it and to recalibrate:

- `calibration`: conformal calibration of the rule's statistic, the tail fit, `AlertPlan`, `plan_alerts`;
- `rule`: `check_threshold` (the one threshold validator) and the k-of-n `AnomalyRule`;
- `plan`: which rule is in force for a sensor (command, calibration, config, manifest) and its summary;
- `ledger`: alert episodes observed against those expected, with a Poisson tail;
- `recalibrate`: `cmd/calibrate`'s collection of scores declared normal;
- `support`: what a calibration can promise (the rate its span supports, a threshold far above the data);
- `burnin`: the rule learned on the device from the live stream, then re-planned slowly on quiet readings.

It imports nothing of `edge` outside itself: numpy and the standard library only.
"""
