"""Trains AlexNet with the paper's recipe on ILSVRC2012 (or fine-tunes it on your own folders of classes), resumably:
checkpoints, config.json and TensorBoard's summaries in --ckpt-dir.

    python train.py -scratch --sample
"""

import alexnet_tf  # noqa: F401  (first: TensorFlow's quiet start-up)

import argparse
import dataclasses
import os

import tensorflow as tf

import data_reader
from alexnet_tf import (
    distribute,
    errors,
    input_pipeline,
    preprocessing,
    run_config,
    run_folder,
    sample_dataset,
    train_options,
    training,
)


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
    train_options.add_arguments(parser)
    return parser


def main(args):
    if args.mode is None:
        raise errors.UsageError(f"say -scratch to start a new run, or -resume to continue the one in {args.ckpt_dir}")
    strategy = distribute.make_strategy(args.strategy, args.cpu_replicas)
    saved = run_folder.load_config(args.ckpt_dir) if args.mode == "resume" else None
    source = fine_tuning_source(args) if args.mode == "scratch" else None
    options = train_options.resolve(args, saved=saved, source=source, replicas=strategy.num_replicas_in_sync)
    if options.settings.deterministic:
        tf.config.experimental.enable_op_determinism()  # for the whole process: the process is the run
    print(
        f"tf.distribute: {type(strategy).__name__.lstrip('_')}, {strategy.num_replicas_in_sync} replica(s)"
        + ("" if strategy.extended.should_checkpoint else "; the chief writes the run")
    )
    data_dir = sample_dataset.data_dir_for(options.data_dir, options.sample, run=saved)
    if options.mode == "scratch":
        run_folder.check_apart(ckpt_dir=options.ckpt_dir, log_dir=options.log_dir, data_dir=data_dir)
    synsets = data_reader.load_classes(data_dir)
    wnids = [s.wnid for s in synsets]
    order = None if saved is None else run_folder.class_order(saved, wnids, options.ckpt_dir, data_dir)
    split = options.settings.split_args()
    train_split = data_reader.read_split(data_dir, synsets, "train", **split).relabeled(order)
    val_split = data_reader.read_split(data_dir, synsets, "val", **split).relabeled(order)
    if options.mode == "scratch" and strategy.extended.should_checkpoint:
        refuse_to_overwrite(options)
        os.makedirs(options.ckpt_dir, exist_ok=True)
    with (
        run_folder.worker_folders(options.ckpt_dir, options.log_dir, strategy) as (ckpt_dir, log_dir),
        run_folder.lock(ckpt_dir),
    ):
        config_json = distribute.from_chief(  # the chief's config, the same on every worker
            strategy,
            lambda: new_run_config(
                options,
                saved=saved,
                source=source,
                synsets=synsets,
                data_dir=data_dir,
                train_split=train_split,
                val_split=val_split,
            ).to_json(),
        )
        config = run_config.RunConfig.from_json(config_json)
        train_split, val_split = (
            readable(train_split, data_dir, config.unreadable.train, source=options.ckpt_dir),
            readable(val_split, data_dir, config.unreadable.val, source=options.ckpt_dir),
        )
        model, plateau, checkpoint = training.build_training(
            config,
            jit_compile=options.xla,
            strategy=strategy,
            steps_per_execution=training.steps_per_execution(config.settings),
        )
        if source is not None:
            training.transfer_weights(model, options.settings.init_from, config.classes)
        manager = start_saving(
            options,
            config,
            model=model,
            checkpoint=checkpoint,
            ckpt_dir=ckpt_dir,
            chief=strategy.extended.should_checkpoint,
        )
        if options.mode == "resume":
            restore(options, checkpoint, model)
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


def refuse_to_overwrite(options):
    """-scratch into a folder that holds a run needs --overwrite; the old run is removed only when the new one is
    about to write its first file (start_saving)."""
    if run_folder.run_files(options.ckpt_dir) and not options.overwrite:
        raise errors.CheckpointError(
            f"{options.ckpt_dir} already holds a run: continue it with -resume, "
            "or pass --overwrite to start again, or choose another --ckpt-dir"
        )


def new_run_config(options, *, saved, source, synsets, data_dir, train_split, val_split):
    """The run's RunConfig: at -scratch a new one, with the unreadable images found once (so that the run and its
    resumes train on the same files) and the training set's mean, or, fine-tuning, the `source` run's
    architecture and preprocessing; at -resume the saved one with this command's settings. On a cluster the chief
    alone computes it."""
    settings = options.settings
    counts = image_counts(train_split, val_split)
    folders = {
        "data_dir": os.path.abspath(data_dir),
        "log_dir": run_folder.log_dir_to_keep(options.ckpt_dir, options.log_dir),
    }
    if saved is not None:
        config = saved.replace(settings=settings, **folders)
        if config.layout != train_split.layout:
            print(
                f"The run was trained on {config.layout} and continues on {train_split.layout}: the same images "
                "and labels in another order, so the epoch it resumes in may repeat or skip some images"
            )
            config = config.replace(
                layout=train_split.layout,
                unreadable=unreadable_images(data_dir, train_split, val_split),
                images=counts,
            )
        else:
            say_what_changed(config, data_dir, counts)
        if settings.precision != saved.settings.precision:
            print(f"The run trained in {saved.settings.precision} and continues in {settings.precision}")
        return config
    settings = options.settings_for(len(synsets))
    if settings.lr != options.settings.lr:
        print(
            f"Learning rate {settings.lr:g} for {len(synsets)} classes of your own at batch {settings.batch_size}: the "
            f"paper's {options.settings.lr:g} scaled with the batch, at most {train_options.OWN_CLASSES_MAX_LR:g} "
            "(--lr sets another)"
        )
    unreadable = unreadable_images(data_dir, train_split, val_split)
    num_images = train_split.num_images - len(unreadable.train)
    max_bad = options.max_bad(train_split.num_images)
    if len(unreadable.train) > max_bad:
        raise errors.DataError(
            f"{len(unreadable.train)} of {train_split.num_images} training images are unreadable, more than the "
            f"{max_bad} allowed (--max-bad-images), e.g. {os.path.join(data_dir, unreadable.train[0])}: check "
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
            readable(train_split, data_dir, unreadable.train, quiet=True), seed=settings.seed
        )
    architecture = source.architecture if source else run_config.Architecture(groups=settings.groups)
    return run_config.RunConfig(
        architecture=dataclasses.replace(architecture, num_classes=len(synsets), dropout=settings.dropout),
        classes=tuple(run_config.ClassName(wnid=s.wnid, words=s.words) for s in synsets),
        preprocessing=source.preprocessing if source else preprocessing.Preprocessing(mean=mean),
        settings=dataclasses.replace(settings, steps_per_epoch=steps_per_epoch),
        unreadable=unreadable,
        layout=train_split.layout,
        images=counts,
        **folders,
    )


def image_counts(train_split, val_split):
    """The images the run's two sets hold, unreadable ones included: config.json keeps them to tell a resume whether
    the sets changed since."""
    return run_config.ImageCounts(train=train_split.num_images, val=val_split.num_images)


def say_what_changed(config, data_dir, counts):
    """Says, at -resume, which of the run's image sets has another number of images than when the run started (runs
    from before config.json kept the numbers are not checked)."""
    started = config.images or counts
    if counts.train != started.train:
        steps = config.settings.steps_per_epoch
        print(
            f"The training set in {data_dir} has {counts.train} images, {started.train} when the run started: "
            f"its epochs keep {steps} step(s), and the epoch it resumes in may repeat or skip some images "
            "(-scratch starts a run on the set as it is)"
        )
    if counts.val != started.val:
        print(
            f"The validation set in {data_dir} has {counts.val} images, {started.val} when the run started: "
            "its validation figures no longer compare with the earlier epochs'"
        )


def unreadable_images(data_dir, train_split, val_split):
    """The training and validation images that do not decode, as paths relative to `data_dir`."""
    return run_config.Unreadable(
        **{
            part: tuple(
                os.path.relpath(path, data_dir) for path in input_pipeline.find_unreadable(split, f"{part} images")
            )
            for part, split in (("train", train_split), ("val", val_split))
        }
    )


def readable(split, data_dir, unreadable, quiet=False, source=None):
    """`split` less its `unreadable` files (paths relative to `data_dir`; `source`: the run folder whose config.json
    lists them, and which must not lead outside `data_dir`)."""
    config = os.path.join(source, run_folder.CONFIG_NAME) if source else "the scan"
    return split.without(
        [errors.inside(data_dir, path, config, errors.CheckpointError, opened=False) for path in unreadable],
        quiet=quiet,
    )


def start_saving(options, config, *, model, checkpoint, ckpt_dir, chief):
    """The checkpoint manager, once the folder is ready: room for the checkpoints checked, then the old run (at
    -scratch --overwrite) and unfinished saves removed, then (at -scratch) config.json written."""
    stale = run_folder.run_files(ckpt_dir) if options.mode == "scratch" else run_folder.unfinished_saves(ckpt_dir)
    state = None if options.mode == "scratch" else run_folder.checkpoint_state(ckpt_dir)
    run_folder.check_free_space(
        ckpt_dir,
        size=run_folder.checkpoint_bytes(model),
        kept=run_folder.kept_checkpoints(chief),
        saved=len(state.all_model_checkpoint_paths) if state else 0,
        reclaimable=run_folder.size_on_disk(stale),
        elsewhere="choose another --ckpt-dir" if chief else "set TMPDIR to a larger disk on this worker",
    )
    run_folder.remove(stale)
    if options.mode == "scratch":
        run_folder.save_config(ckpt_dir, config)
    return run_folder.checkpoint_manager(checkpoint, ckpt_dir, chief=chief)


def restore(options, checkpoint, model):
    """The run's latest checkpoint, from the run folder (on every worker); a run killed before its first checkpoint
    starts at step 0 with its saved config."""
    path = run_folder.latest_or_none(options.ckpt_dir)
    if path is None:
        print(f"No checkpoint in {options.ckpt_dir} yet: starting the run at step 0 with its config.json")
        return
    run_folder.restore(checkpoint, path)
    step = training.global_step(model)
    done = step // options.settings.steps_per_epoch
    if options.settings.epochs < done:
        raise errors.UsageError(
            f"the run in {options.ckpt_dir} has done {done} epochs, more than --epochs {options.settings.epochs}: "
            f"pass --epochs {done + 1} or more to train on, or leave it out"
        )
    print(f"Resuming from {path} at step {step} (epoch {step // options.settings.steps_per_epoch + 1})")


if __name__ == "__main__":
    parser = get_args_parser()
    with errors.reported(parser):
        main(parser.parse_args())
