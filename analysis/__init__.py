"""Analysis of recorded trajectories, whatever produced them (toy simulation, network, your own loop).

Lobacheva et al. (NeurIPS 2021) read training with BN and WD through its destabilisations: the
norm of the scale-invariant weights decays until the effective LR is too large, the loss spikes and
a new period starts. Everything here takes plain arrays (norm, loss, iteration) and returns records;
nothing imports torch, the toy engines or the networks.

================  ================================================================================
``periods``       offline destabilisation detector and period statistics (:func:`detect_periods`)
``online``        the same detector, streamed one record at a time (used by ``SIMonitor``)
``rows``          a growing series as compact float rows, in memory or spilled to a file
``report``        periods of a run vs the theory, collapse, stability at each destabilisation
``forecast``      the next destabilisation from the sharpness trend (critical norm of the theory)
``regimes``       the three regimes of training on the sphere (Kodryan et al. 2022): one rule
``regime_plots``  drawing regime maps on matplotlib axes
================  ================================================================================
"""
