"""Trains AlexNet with the paper's recipe on ILSVRC2012 (or fine-tunes it on your own folders of classes), resumably:
checkpoints, config.json and TensorBoard's summaries in --ckpt-dir.

    python train.py -scratch --sample
"""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import argparse
import os

import tensorflow as tf

import alexnet
import data_reader
from alexnet_tf import distribute, errors, input_pipeline, preprocessing, run_folder, sample_dataset
from alexnet_tf import settings as run_settings
from alexnet_tf import training


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "-scratch",
        "--scratch",
        dest="mode",
        action="store_const",
        const="scratch",
        help="start a new run in --ckpt-dir",
    )
    mode.add_argument(
        "-resume",
        "--resume",
        dest="mode",
        action="store_const",
        const="resume",
        help="continue the run in --ckpt-dir from its latest checkpoint, with its own settings",
    )
    run_settings.add_arguments(parser)
    return parser


def main(args):
    if args.mode is None:
        raise errors.UsageError(f"say -scratch to start a new run, or -resume to continue the one in {args.ckpt_dir}")
    strategy = distribute.make_strategy(args.strategy, args.cpu_replicas)
    saved = run_folder.load_config(args.ckpt_dir) if args.mode == "resume" else None
    source = fine_tuning_source(args) if args.mode == "scratch" else None
    settings = run_settings.resolve(args, saved=saved, source=source, replicas=strategy.num_replicas_in_sync)
    print(
        f"tf.distribute: {type(strategy).__name__.lstrip('_')}, {strategy.num_replicas_in_sync} replica(s)"
        + ("" if strategy.extended.should_checkpoint else "; the chief writes the run")
    )
    data_dir = sample_dataset.data_dir_for(settings.data_dir, settings.sample, run=saved)
    synsets = data_reader.load_classes(data_dir)
    wnids = [s.wnid for s in synsets]
    order = None if saved is None else run_folder.class_order(saved, wnids, settings.ckpt_dir, data_dir)
    split = {"val_fraction": settings.val_fraction, "seed": settings.seed}
    train_split = data_reader.read_split(data_dir, synsets, "train", **split).relabeled(order)
    val_split = data_reader.read_split(data_dir, synsets, "val", **split).relabeled(order)
    if settings.mode == "scratch" and strategy.extended.should_checkpoint:
        refuse_to_overwrite(settings)
        os.makedirs(settings.ckpt_dir, exist_ok=True)
    with (
        run_folder.worker_folders(settings.ckpt_dir, settings.log_dir, strategy) as (ckpt_dir, log_dir),
        run_folder.lock(ckpt_dir),
    ):
        config = distribute.from_chief(
            strategy,
            lambda: run_config(
                settings,
                saved=saved,
                source=source,
                synsets=synsets,
                data_dir=data_dir,
                train_split=train_split,
                val_split=val_split,
            ),
        )
        train_split, val_split = (
            readable(train_split, data_dir, config["unreadable"]["train"], source=settings.ckpt_dir),
            readable(val_split, data_dir, config["unreadable"]["val"], source=settings.ckpt_dir),
        )
        model, plateau, checkpoint = training.build_training(
            config,
            jit_compile=settings.xla,
            strategy=strategy,
            steps_per_execution=training.steps_per_execution(config["settings"]),
        )
        if source is not None:
            training.transfer_weights(model, settings.init_from, config["classes"])
        manager = start_saving(
            settings,
            config,
            model=model,
            checkpoint=checkpoint,
            ckpt_dir=ckpt_dir,
            chief=strategy.extended.should_checkpoint,
        )
        if settings.mode == "resume":
            restore(settings, checkpoint, model)
            run_folder.save_config(ckpt_dir, config)
        training.fit(
            model,
            config=config,
            plateau=plateau,
            manager=manager,
            train_split=train_split,
            val_split=val_split,
            log_dir=log_dir,
            strategy=strategy,
        )


def fine_tuning_source(args):
    """The config of the --init-from run, checked to hold a finished run (None without --init-from)."""
    if args.init_from is None:
        return None
    try:
        run_folder.latest_checkpoint(args.init_from)
        return run_folder.load_config(args.init_from)
    except errors.CheckpointError as error:
        raise errors.CheckpointError(f"--init-from: {error}") from None


def refuse_to_overwrite(settings):
    """-scratch into a folder that holds a run needs --overwrite; the old run is removed only when the new one is
    about to write its first file (start_saving)."""
    if run_folder.run_files(settings.ckpt_dir) and not settings.overwrite:
        raise errors.CheckpointError(
            f"{settings.ckpt_dir} already holds a run: continue it with -resume, "
            "or pass --overwrite to start again, or choose another --ckpt-dir"
        )


def run_config(settings, *, saved, source, synsets, data_dir, train_split, val_split):
    """The run's config: at -scratch a new one, with the unreadable images found once (so that the run and its
    resumes train on the same files) and the training set's mean, or, fine-tuning, the `source` run's
    architecture and preprocessing; at -resume the saved one with this command's settings. On a cluster the chief
    alone computes it."""
    counts = image_counts(train_split, val_split)
    paths = {  # run_folder.MACHINE_PATHS
        "data_dir": os.path.abspath(data_dir),
        "log_dir": run_folder.log_dir_to_keep(settings.ckpt_dir, settings.log_dir),
    }
    if saved is not None:
        config = {**saved, "settings": settings.run_settings(), **paths}
        if config["layout"] != train_split.layout:
            print(
                f"The run was trained on {config['layout']} and continues on {train_split.layout}: the same images "
                "and labels in another order, so the epoch it resumes in may repeat or skip some images"
            )
            config.update(
                layout=train_split.layout,
                unreadable=unreadable_images(data_dir, train_split, val_split),
                images=counts,
            )
        else:
            say_what_changed(config, data_dir, counts)
        if settings.precision != saved["settings"]["precision"]:
            print(f"The run trained in {saved['settings']['precision']} and continues in {settings.precision}")
        return config
    unreadable = unreadable_images(data_dir, train_split, val_split)
    num_images = train_split.num_images - len(unreadable["train"])
    max_bad = settings.max_bad(train_split.num_images)
    if len(unreadable["train"]) > max_bad:
        raise errors.DataError(
            f"{len(unreadable['train'])} of {train_split.num_images} training images are unreadable, more than the "
            f"{max_bad} allowed (--max-bad-images), e.g. {os.path.join(data_dir, unreadable['train'][0])}: check "
            "the dataset's extraction"
        )
    steps_per_epoch = settings.steps_per_epoch or training.epoch_steps(
        num_images, settings.batch_size, settings.save_every
    )
    if steps_per_epoch < 1:
        raise errors.DataError(
            f"{num_images} training images make no batch of {settings.batch_size}: lower --batch-size"
        )
    if source is None:
        print(f"Computing the training set's mean on up to {input_pipeline.MEAN_MAX_IMAGES} images ...")
        mean = input_pipeline.compute_mean(
            readable(train_split, data_dir, unreadable["train"], quiet=True), seed=settings.seed
        )
    return {
        "architecture": {
            **(source["architecture"] if source else alexnet.architecture(groups=settings.groups)),
            "num_classes": len(synsets),
            "dropout": settings.dropout,
        },
        "classes": [{"wnid": s.wnid, "words": s.words} for s in synsets],
        "preprocessing": source["preprocessing"] if source else preprocessing.Preprocessing(mean=mean).to_config(),
        "layout": train_split.layout,
        **paths,
        "images": counts,
        "settings": {**settings.run_settings(), "steps_per_epoch": steps_per_epoch},
        "unreadable": unreadable,
    }


def image_counts(train_split, val_split):
    """The images the run's two sets hold, unreadable ones included: config.json keeps them to tell a resume whether
    the sets changed since."""
    return {"train": train_split.num_images, "val": val_split.num_images}


def say_what_changed(config, data_dir, counts):
    """Says, at -resume, which of the run's image sets has another number of images than when the run started (runs
    from before config.json kept the numbers are not checked)."""
    started = config.get("images", counts)
    if counts["train"] != started["train"]:
        steps = config["settings"]["steps_per_epoch"]
        print(
            f"The training set in {data_dir} has {counts['train']} images, {started['train']} when the run started: "
            f"its epochs keep {steps} step(s), and the epoch it resumes in may repeat or skip some images "
            "(-scratch starts a run on the set as it is)"
        )
    if counts["val"] != started["val"]:
        print(
            f"The validation set in {data_dir} has {counts['val']} images, {started['val']} when the run started: "
            "its validation figures no longer compare with the earlier epochs'"
        )


def unreadable_images(data_dir, train_split, val_split):
    """The training and validation images that do not decode, as paths relative to `data_dir`."""
    return {
        part: [os.path.relpath(path, data_dir) for path in input_pipeline.find_unreadable(split, f"{part} images")]
        for part, split in (("train", train_split), ("val", val_split))
    }


def readable(split, data_dir, unreadable, quiet=False, source=None):
    """`split` less its `unreadable` files (paths relative to `data_dir`; `source`: the run folder whose config.json
    lists them, and which must not lead outside `data_dir`)."""
    config = os.path.join(source, run_folder.CONFIG_NAME) if source else "the scan"
    return split.without(
        [errors.inside(data_dir, path, config, errors.CheckpointError, opened=False) for path in unreadable],
        quiet=quiet,
    )


def start_saving(settings, config, *, model, checkpoint, ckpt_dir, chief):
    """The checkpoint manager, once the folder is ready: room for the checkpoints checked, then the old run (at
    -scratch --overwrite) and unfinished saves removed, then (at -scratch) config.json written."""
    stale = run_folder.run_files(ckpt_dir) if settings.mode == "scratch" else run_folder.unfinished_saves(ckpt_dir)
    state = None if settings.mode == "scratch" else tf.train.get_checkpoint_state(ckpt_dir)
    run_folder.check_free_space(
        ckpt_dir,
        size=run_folder.checkpoint_bytes(model),
        kept=run_folder.kept_checkpoints(chief),
        saved=len(state.all_model_checkpoint_paths) if state else 0,
        reclaimable=run_folder.size_on_disk(stale),
        elsewhere="choose another --ckpt-dir" if chief else "set TMPDIR to a larger disk on this worker",
    )
    run_folder.remove(stale)
    if settings.mode == "scratch":
        run_folder.save_config(ckpt_dir, config)
    return run_folder.checkpoint_manager(checkpoint, ckpt_dir, chief=chief)


def restore(settings, checkpoint, model):
    """The run's latest checkpoint, from the run folder (on every worker); a run killed before its first checkpoint
    starts at step 0 with its saved config."""
    path = tf.train.latest_checkpoint(settings.ckpt_dir)
    if path is None:
        print(f"No checkpoint in {settings.ckpt_dir} yet: starting the run at step 0 with its config.json")
        return
    run_folder.restore(checkpoint, path)
    step = training.global_step(model)
    print(f"Resuming from {path} at step {step} (epoch {step // settings.steps_per_epoch + 1})")


if __name__ == "__main__":
    parser = get_args_parser()
    with errors.reported(parser):
        main(parser.parse_args())
