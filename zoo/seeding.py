"""Per-row stateless randomness for the serving contract.

Every exported function takes ``seed`` (int64, shape (B, 2)); row i's noise is a
function of ``seed[i]`` alone, so a row gives the same output whether it is
requested alone or inside a larger batch, in any process.
"""
import tensorflow as tf


def split_rows(seed, num):
    """Splits each row's seed into ``num`` independent seeds: a list of (B, 2)."""
    seed = tf.cast(seed, tf.int64)
    parts = tf.map_fn(
        lambda s: tf.random.experimental.stateless_split(s, num),
        seed,
        fn_output_signature=tf.TensorSpec([num, 2], tf.int64),
    )  # (B, num, 2)
    return tf.unstack(parts, num=num, axis=1)


def _per_row(sampler, seed, shape):
    shape = list(shape)
    return tf.map_fn(
        lambda s: sampler(shape, seed=s),
        tf.cast(seed, tf.int64),
        fn_output_signature=tf.TensorSpec(shape, tf.float32),
    )


def normal_rows(seed, shape):
    """A standard normal draw of ``shape`` per row: (B, *shape)."""
    return _per_row(tf.random.stateless_normal, seed, shape)


def uniform_rows(seed, shape):
    """A uniform [0, 1) draw of ``shape`` per row: (B, *shape)."""
    return _per_row(tf.random.stateless_uniform, seed, shape)


def training_seed(generator, step=None, per_replica=True):
    """A fresh stateless seed (2,) from a Keras SeedGenerator, distinct per replica.

    Under a tf.distribute strategy the generator's state is mirrored, so every
    replica would otherwise draw the same noise (a GAN's replicas would all
    generate the same images); the replica id is folded in. ``step`` (e.g. an
    optimizer's iteration count, which checkpoints restore while the
    generator's state is not saved with the weights) is folded in too, so a
    resumed run does not replay its first noise. ``per_replica=False`` leaves
    the replica out: the same seed on every replica, for draws the replicas
    must agree on.
    """
    seed = tf.cast(generator.next(), tf.int64)
    if step is not None:
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(step, tf.int64))
    if not per_replica:
        return seed
    ctx = tf.distribute.get_replica_context()
    replica = ctx.replica_id_in_sync_group if ctx is not None else 0
    return tf.random.experimental.stateless_fold_in(seed, tf.cast(replica, tf.int64))
