"""tf.distribute strategies by name, and what a multi-worker run needs (chief, barrier)."""
from __future__ import annotations

from bioclip_lite_tf.keras import tf
from bioclip_lite_tf.train.checks import UsageError

STRATEGIES = ("default", "mirrored", "multi_worker")


def make_strategy(name: str, cpu_devices: int = 0) -> tf.distribute.Strategy:
  """default | mirrored | multi_worker. cpu_devices > 1 first splits the CPU into logical ones."""
  if cpu_devices and cpu_devices > 1:
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_devices)])
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    if tf.config.list_physical_devices("GPU"):
      return tf.distribute.MirroredStrategy()
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    # NCCL is GPU only; on CPUs reduce through one device.
    return tf.distribute.MirroredStrategy(
        devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise UsageError(f"unknown --strategy {name!r}; one of {STRATEGIES}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True unless this process is a non-chief worker of a multi-worker cluster (TF_CONFIG)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
  if not spec:
    return True
  if resolver.task_type in (None, "chief"):
    return True
  return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in spec


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Every worker waits here (an all-reduce), e.g. until the chief has written a model file."""
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)
