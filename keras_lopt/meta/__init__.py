"""Meta-training learned optimizers (needs the `meta` extra; imports
tensorflow_datasets lazily).

    config.py           `MetaTrainConfig`: validated dataclasses, read from JSON
    datasets.py         small data sets, built offline with tensorflow-datasets
    tasks.py            `Task`: what the inner loop trains (`keras_task`, toys)
    families.py         `TaskFamily` and the built-in families configs name
    unroll.py           `Unroll`: the inner training loop, compiled per task
                        structure, and its `InnerState`
    estimators/         gradient estimators (full ES, truncated ES, PES), one
                        module each, a registry, the horizon schedule
    trainer.py          `MetaTrainer`: the outer loop
    outer_optimizer.py  Adam on the meta-weights (numpy)
    task_slots.py       which task each slot of an outer step trains
    checkpoint.py       the npz checkpoint format (named arrays; old files
                        are upgraded on load)
    summaries.py        TensorBoard scalars
    networks.py         the network a config names and its initial weights
    export.py           a run's meta-weights as a preset
    distributed.py      sharing task slots among tf.distribute replicas
    local_cluster.py    N local worker processes of one command
"""
