"""jaxgan.parallel on the 8 simulated CPU devices of tests/conftest.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, PartitionSpec

from jaxgan import parallel


def test_mesh_spans_all_devices_with_auto_data_axis():
    assert jax.device_count() == 8
    mesh = parallel.make_mesh()
    assert mesh.axis_names == ("data",)
    assert mesh.shape["data"] == 8
    assert mesh.axis_types == (AxisType.Auto,)
    assert parallel.make_mesh(jax.devices()[:2]).shape["data"] == 2


def test_shard_batch_splits_the_leading_axis():
    mesh = parallel.make_mesh()
    host = {"image": np.arange(16 * 2 * 2 * 1, dtype=np.float32).reshape(16, 2, 2, 1)}
    batch = parallel.shard_batch(host, mesh)
    x = batch["image"]
    assert x.shape == (16, 2, 2, 1)
    assert x.sharding.spec == PartitionSpec("data")
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start)
    assert len(shards) == 8
    for i, s in enumerate(shards):
        assert s.data.shape == (2, 2, 2, 1)
        np.testing.assert_array_equal(s.data, host["image"][2 * i: 2 * i + 2])
    np.testing.assert_array_equal(x, host["image"])


def test_shard_batch_rejects_indivisible_batch():
    with pytest.raises(ValueError, match="multiple of 8"):
        parallel.shard_batch({"image": np.zeros((6, 2, 2, 1), np.float32)}, parallel.make_mesh())


def test_jit_step_replicates_state_donates_it_and_matches_unsharded():
    mesh = parallel.make_mesh()

    def step(state, batch, key):
        # batch reduction + noise concatenated with the sharded batch (fails on Explicit axes)
        noise = jax.random.normal(key, batch.shape)
        both = jnp.concatenate([batch, noise], axis=0)
        new = {"w": state["w"] + jnp.mean(both, axis=0), "n": state["n"] + 1}
        return new, {"mean": jnp.mean(batch)}

    host = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    key = jax.random.key(0)
    init = {"w": jnp.zeros(3), "n": jnp.zeros((), jnp.int32)}
    want_state, want_metrics = jax.jit(step)(init, jnp.asarray(host), key)

    sharded = parallel.jit_step(step, mesh)
    state = parallel.replicate({"w": jnp.zeros(3), "n": jnp.zeros((), jnp.int32)}, mesh)
    old_w = state["w"]
    new_state, metrics = sharded(state, parallel.shard_batch(host, mesh),
                                 parallel.replicate(key, mesh))
    assert new_state["w"].sharding.is_fully_replicated
    assert old_w.is_deleted(), "the input state should have been donated"
    np.testing.assert_allclose(new_state["w"], want_state["w"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(metrics["mean"], want_metrics["mean"], rtol=1e-6)
    assert int(new_state["n"]) == 1


def test_replicated_creates_keys_and_state_on_every_device_without_device_put():
    mesh = parallel.make_mesh()
    key, w = parallel.replicated(lambda: (jax.random.key(3), jnp.arange(4.0)), mesh)()
    assert key.sharding.is_fully_replicated and len(key.sharding.device_set) == 8
    assert w.sharding.spec == PartitionSpec()
    np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(
        jax.random.key(3)))


def test_mesh_orders_devices_by_process():
    devices = jax.devices()
    mesh = parallel.make_mesh(devices[::-1])
    assert [d.process_index for d in mesh.devices] == sorted(d.process_index for d in devices)


def test_batch_sizes_are_checked_against_devices_and_processes_up_front():
    sizes = [("stage 0 (4x4)", 16), ("stage 7 (512x512)", 6), ("stage 8 (1024x1024)", 3)]
    parallel.check_batch_sizes(sizes, num_devices=8, num_processes=1)  # one host: any size
    with pytest.raises(parallel.BatchSizeError) as e:
        parallel.check_batch_sizes(sizes, num_devices=8, num_processes=2)
    msg = str(e.value)
    assert "stage 7 (512x512): global batch size 6 does not split over 8 devices of 2 " \
           "processes; nearest valid: 8" in msg
    assert "stage 8 (1024x1024): global batch size 3" in msg and "stage 0" not in msg
    assert "--config.schedule.batch_size_per_stage" in msg
    assert parallel.nearest_multiples(12, 8) == (8, 16)
    assert parallel.nearest_multiples(3, 8) == (8,)
