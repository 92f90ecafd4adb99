"""fastdit's Python package on the parity cases: numpy and torch CPU tensors in, heads out in
the caller's type, errors as FastditError with the engine's message, safetensors I/O.
torch is required: a missing torch fails these tests (CI installs python3-torch)."""

import ctypes
import os
import tempfile
import unittest

import numpy as np
import torch

import fastdit
from fastdit import _capi
from cases import FLOAT32_BOUND, all_cases, bf16_bound, case, inputs_and_args, references, rel_l2

WAN = case("wan/t2v")
SD3 = case("sd3/sd3")


class CasesTest(unittest.TestCase):
    def test_every_case_from_numpy(self):
        cases = all_cases()
        self.assertGreaterEqual(len(cases), 2, f"no parity cases under {cases}")
        for case_dir in cases:
            with self.subTest(case=case_dir.name):
                model = fastdit.load(case_dir / "transformer")
                inputs, args = inputs_and_args(case_dir)
                heads = model(**inputs, **args)
                refs = references(case_dir)
                self.assertEqual(sorted(heads), sorted(refs))
                for name, (ref, _) in refs.items():
                    self.assertIsInstance(heads[name], np.ndarray)
                    self.assertEqual(heads[name].dtype, np.float32)
                    self.assertEqual(heads[name].shape, ref.shape)
                    self.assertLessEqual(rel_l2(heads[name], ref), FLOAT32_BOUND, f"{case_dir} head {name}")

    def test_torch_cpu_tensors(self):
        for case_dir in (WAN, SD3):
            with self.subTest(case=case_dir.name):
                model = fastdit.load(case_dir / "transformer")
                inputs, args = inputs_and_args(case_dir)
                heads = model(**{k: torch.from_numpy(v.copy()) for k, v in inputs.items()}, **args)
                for name, (ref, _) in references(case_dir).items():
                    out = heads[name]
                    self.assertIsInstance(out, torch.Tensor)
                    self.assertEqual((out.dtype, out.device.type), (torch.float32, "cpu"))
                    self.assertLessEqual(rel_l2(out.numpy(), ref), FLOAT32_BOUND)

    def test_bfloat16_model_returns_torch_bfloat16(self):
        model = fastdit.load(WAN / "transformer", dtype="bfloat16")
        self.assertEqual(model.dtype, "bfloat16")
        inputs, _ = inputs_and_args(WAN)
        out = model(**{k: torch.from_numpy(v.copy()) for k, v in inputs.items()})["sample"]
        self.assertEqual(out.dtype, torch.bfloat16)
        ref, ref_bf16 = references(WAN)["sample"]
        self.assertLessEqual(rel_l2(out.float().numpy(), ref), bf16_bound(ref, ref_bf16))
        # numpy callers get float32 (numpy has no bfloat16).
        self.assertEqual(model(**inputs)["sample"].dtype, np.float32)

    def test_strided_inputs_equal_contiguous_ones(self):
        model = fastdit.load(WAN / "transformer")
        inputs, _ = inputs_and_args(WAN)
        expected = model(**inputs)["sample"]
        # An expanded timestep (stride 0, as pipelines pass t.expand(B)) and a transposed copy.
        latents = np.ascontiguousarray(inputs["hidden_states"].transpose(0, 1, 2, 4, 3)).transpose(0, 1, 2, 4, 3)
        self.assertFalse(latents.flags.c_contiguous)
        out = model(hidden_states=torch.from_numpy(latents), timestep=torch.tensor(inputs["timestep"]).expand(1),
                    encoder_hidden_states=torch.from_numpy(inputs["encoder_hidden_states"].copy()))["sample"]
        np.testing.assert_array_equal(out.numpy(), expected)

    def test_declaration(self):
        model = fastdit.load(SD3 / "transformer")
        self.assertEqual(model.class_name, "SD3Transformer2DModel")
        self.assertEqual(list(model.inputs), ["hidden_states", "encoder_hidden_states", "pooled_projections",
                                              "timestep"])
        self.assertEqual(model.inputs["hidden_states"].ranks, (4,))
        self.assertEqual(model.inputs["timestep"].role, "timestep")
        self.assertEqual(model.args["skip_layers"].type, "int list")
        self.assertEqual(model.outputs, ["sample"])
        self.assertTrue(model.takes("return_dict"))
        self.assertFalse(model.takes("foo"))


class ArgsTest(unittest.TestCase):
    def test_args_reach_the_model(self):
        model = fastdit.load(SD3 / "transformer")
        inputs, _ = inputs_and_args(SD3)
        plain = model(**inputs)["sample"]
        self.assertEqual(rel_l2(model(**inputs, skip_layers=[])["sample"], plain), 0.0)
        skipped = model(**inputs, skip_layers=[0])["sample"]
        self.assertGreater(rel_l2(skipped, plain), 1e-3)
        np.testing.assert_array_equal(model(**inputs, skip_layers=np.array([0]))["sample"], skipped)
        # The reference's None and its result-shape arguments are accepted and change nothing.
        np.testing.assert_array_equal(
            model(**inputs, skip_layers=None, return_dict=False, joint_attention_kwargs={"scale": 1.0})["sample"],
            plain)

    def test_wrong_argument_type_names_it(self):
        model = fastdit.load(SD3 / "transformer")
        inputs, _ = inputs_and_args(SD3)
        with self.assertRaisesRegex(fastdit.FastditError, r"argument 'skip_layers' must be int list, got 1\.5"):
            model(**inputs, skip_layers=1.5)
        with self.assertRaisesRegex(fastdit.FastditError, r"argument 'skip_layers': dict"):
            model(**inputs, skip_layers={"a": 1})


class ErrorsTest(unittest.TestCase):
    def setUp(self):
        self.model = fastdit.load(WAN / "transformer")
        self.inputs, _ = inputs_and_args(WAN)

    def assert_engine_error(self, pattern, call):
        with self.assertRaisesRegex(fastdit.FastditError, pattern) as caught:
            call()
        self.assertEqual(caught.exception.status, 2)

    def test_bad_path(self):
        self.assert_engine_error(r"/no/such/model.*no such file", lambda: fastdit.load("/no/such/model"))

    def test_wrong_shape(self):
        latents = self.inputs["hidden_states"][0]
        self.assert_engine_error(r"input 'hidden_states' must have rank 5, got float32\[4, 3, 6, 10\]",
                                 lambda: self.model(**{**self.inputs, "hidden_states": latents}))
        wrong_channels = np.zeros((1, 5, 3, 6, 10), np.float32)
        self.assert_engine_error(r"hidden_states must be \[B, 4, F, H, W\]",
                                 lambda: self.model(**{**self.inputs, "hidden_states": wrong_channels}))

    def test_unknown_keyword(self):
        self.assert_engine_error(r"'foo' is not an argument \(accepted: hidden_states, timestep",
                                 lambda: self.model(**self.inputs, foo=3))
        self.assert_engine_error(r"'bar' is not an input",
                                 lambda: self.model(**self.inputs, bar=np.zeros(3, np.float32)))

    def test_missing_input(self):
        inputs = dict(self.inputs)
        del inputs["timestep"]
        self.assert_engine_error(r"missing input 'timestep'", lambda: self.model(**inputs))

    def test_wrong_element_kind(self):
        self.assert_engine_error(r"input 'hidden_states' must be a floating-point tensor, got int64",
                                 lambda: self.model(**{**self.inputs, "hidden_states": np.zeros((1, 4, 3, 6, 10),
                                                                                                np.int64)}))
        with self.assertRaisesRegex(fastdit.FastditError, r"numpy dtype complex64 has no fastdit dtype"):
            self.model(**{**self.inputs, "hidden_states": np.zeros((1, 4, 3, 6, 10), np.complex64)})

    def test_bad_options(self):
        self.assert_engine_error(r"dtype int8: models run in float32, bfloat16 or float16",
                                 lambda: fastdit.load(WAN / "transformer", dtype="int8"))
        self.assert_engine_error(r"tpu", lambda: fastdit.load(WAN / "transformer", device="tpu"))
        self.assert_engine_error(r"precision fp8 needs a CUDA device",
                                 lambda: fastdit.load(WAN / "transformer", dtype="bfloat16", precision="fp8"))
        self.assert_engine_error(r"precision fp4: expected bf16", lambda: fastdit.load(WAN / "transformer", precision="fp4"))
        with self.assertRaisesRegex(fastdit.FastditError, r"attention_backend 'fast' is not one of") as caught:
            fastdit.load(WAN / "transformer", attention_backend="fast")
        self.assertEqual(caught.exception.status, 1)

    def test_closed_model(self):
        self.model.close()
        with self.assertRaisesRegex(fastdit.FastditError, "closed"):
            self.model(**self.inputs)

    def test_misuse_of_the_c_api_is_a_status(self):
        count = ctypes.c_int64()
        status = _capi.lib.fastdit_model_forward(self.model._handle, None, 0, None, 0, None,
                                                 (_capi.TensorOut * 1)(), 0, ctypes.byref(count))
        self.assertEqual(status, 1)
        self.assertIn("outputs has room for 0 heads", _capi.lib.fastdit_last_error().decode())
        self.assertEqual(_capi.lib.fastdit_model_load(None, None, None), 1)


class SafetensorsTest(unittest.TestCase):
    def test_round_trip(self):
        tensors = {
            "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
            "f32_transposed": np.arange(12, dtype=np.float32).reshape(3, 4).T,
            "f16": np.linspace(-2, 2, 5).astype(np.float16),
            "f64": np.array([1e-300, 3.5]),
            "i64": np.array([[-(2**62), 7]], dtype=np.int64),
            "i32": np.array([1, -2, 3], dtype=np.int32),
            "u8": np.array([0, 255], dtype=np.uint8),
            "flags": np.array([True, False, True]),
            "scalar": np.array(2.5, dtype=np.float32),
        }
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "t.safetensors")
            fastdit.save_file(tensors, path, metadata={"format": "np"})
            back = fastdit.load_file(path)
        self.assertEqual(list(back), list(tensors))
        for name, array in tensors.items():
            self.assertEqual(back[name].dtype, array.dtype, name)
            np.testing.assert_array_equal(back[name], array, name)
            self.assertFalse(back[name].flags.writeable)

    def test_torch_bfloat16_comes_back_widened(self):
        values = torch.tensor([1.0, -0.5, 3.0e38, 1.0 / 3.0], dtype=torch.bfloat16)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "b.safetensors")
            fastdit.save_file({"b": values}, path)
            back = fastdit.load_file(path)["b"]
        self.assertEqual(back.dtype, np.float32)
        np.testing.assert_array_equal(back, values.float().numpy())

    def test_bad_files_and_values(self):
        with tempfile.TemporaryDirectory() as folder:
            truncated = os.path.join(folder, "truncated.safetensors")
            with open(WAN / "inputs.safetensors", "rb") as f:
                data = f.read()
            with open(truncated, "wb") as f:
                f.write(data[: len(data) // 2])
            with self.assertRaisesRegex(fastdit.FastditError, "truncated.safetensors"):
                fastdit.load_file(truncated)
            with self.assertRaisesRegex(fastdit.FastditError, "missing.safetensors: cannot open"):
                fastdit.load_file(os.path.join(folder, "missing.safetensors"))
            with self.assertRaisesRegex(fastdit.FastditError, "metadata must map str to str"):
                fastdit.save_file({"a": np.zeros(1)}, os.path.join(folder, "m.safetensors"), metadata={"k": 1})
            self.assertFalse(os.path.exists(os.path.join(folder, "m.safetensors")))


if __name__ == "__main__":
    unittest.main()
