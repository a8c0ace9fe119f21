"""Our training loop for real SI networks, its run directories and checkpoints.

=================  ==============================================================================
``trainer``        :class:`Trainer`: one SGD/Adam(W) step at a time, measured by ``SIMonitor``
``checkpoint``     the trainer's whole state in one atomically written file
``run``            :func:`run_training` / :func:`resume_training`: a run directory from a config
``batched``        K small runs trained as one grouped network (bit-for-bit the separate runs)
``batched_run``    the batched trainer behind run directories (``python -m nets.sweep --batched``)
=================  ==============================================================================
"""
