"""Hand-made benchmark result rows for the tests of the scripts that read them."""


def row(task, seed, optimizer, train, valid):
    """One `results.jsonl` record with the fields the reports read."""
    return {
        "task": task,
        "seed": seed,
        "optimizer": optimizer,
        "steps": 100,
        "final_train_loss": train,
        "final_valid_loss": valid,
    }
