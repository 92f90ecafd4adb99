"""fastdit's Python package on a CUDA model (GPU machine: scripts/gpu-python-check.sh): torch
CUDA tensors lent without a copy and ordered with the caller's stream, heads back on the
same device; numpy and torch CPU callers get host heads."""

import unittest

import numpy as np
import torch

import fastdit
import fastdit.diffusers as fd
from cases import FLOAT32_BOUND, bf16_bound, case, inputs_and_args, references, rel_l2

WAN = case("wan/t2v")
SD3 = case("sd3/sd3")


def cuda_inputs(case_dir, dtype=torch.float32):
    """The case's inputs as CUDA tensors, floating ones but the timestep in `dtype` (as the
    pipelines pass them)."""
    inputs, args = inputs_and_args(case_dir)
    tensors = {k: torch.from_numpy(v.copy()).to("cuda") for k, v in inputs.items()}
    return {k: v.to(dtype) if v.is_floating_point() and k != "timestep" else v for k, v in tensors.items()}, args


class CudaTest(unittest.TestCase):
    def test_cases_from_torch_cuda_float32(self):
        for case_dir in (WAN, SD3):
            with self.subTest(case=case_dir.name):
                model = fastdit.load(case_dir / "transformer", device="cuda")
                inputs, args = cuda_inputs(case_dir)
                heads = model(**inputs, **args)
                for name, (ref, _) in references(case_dir).items():
                    out = heads[name]
                    self.assertEqual((out.device.type, out.dtype), ("cuda", torch.float32))
                    self.assertLessEqual(rel_l2(out.cpu().numpy(), ref), FLOAT32_BOUND)

    def test_bfloat16_on_cuda(self):
        model = fastdit.load(WAN / "transformer", device="cuda", dtype="bfloat16")
        inputs, _ = cuda_inputs(WAN, torch.bfloat16)
        out = model(**inputs)["sample"]
        self.assertEqual((out.device.type, out.dtype), ("cuda", torch.bfloat16))
        ref, ref_bf16 = references(WAN)["sample"]
        self.assertLessEqual(rel_l2(out.float().cpu().numpy(), ref), bf16_bound(ref, ref_bf16))

    def test_inputs_and_outputs_on_a_side_stream(self):
        # The inputs are written on a side stream right before the call and the output is
        # read there right after: without the stream ordering the engine would read stale
        # inputs or the caller an unfinished output.
        model = fastdit.load(WAN / "transformer", device="cuda")
        inputs, _ = cuda_inputs(WAN)
        expected = model(**inputs)["sample"].cpu()
        side = torch.cuda.Stream()
        with torch.cuda.stream(side):
            for _ in range(5):
                zeros = {k: torch.zeros_like(v) for k, v in inputs.items()}
                for k in zeros:
                    torch.cuda._sleep(10_000_000)  # a long kernel ahead of the copy on this stream
                    zeros[k].copy_(inputs[k])
                out = model(**zeros)["sample"] * 1.0
                got = out.cpu()
                torch.testing.assert_close(got, expected, rtol=0, atol=0)

    def test_outputs_freed_in_a_loop(self):
        model = fastdit.load(SD3 / "transformer", device="cuda")
        inputs, _ = cuda_inputs(SD3)
        first = model(**inputs)["sample"].cpu()
        for _ in range(50):
            out = model(**inputs)["sample"]
            del out
        torch.testing.assert_close(model(**inputs)["sample"].cpu(), first, rtol=0, atol=0)

    def test_host_callers_get_host_heads(self):
        model = fastdit.load(WAN / "transformer", device="cuda")
        inputs, _ = inputs_and_args(WAN)
        ref, _ = references(WAN)["sample"]
        out = model(**inputs)["sample"]
        self.assertIsInstance(out, np.ndarray)
        self.assertLessEqual(rel_l2(out, ref), FLOAT32_BOUND)
        out = model(**{k: torch.from_numpy(v.copy()) for k, v in inputs.items()})["sample"]
        self.assertEqual(out.device.type, "cpu")

    def test_cuda_input_on_a_cpu_model_is_an_error(self):
        model = fastdit.load(WAN / "transformer")
        inputs, _ = cuda_inputs(WAN)
        with self.assertRaisesRegex(fastdit.FastditError, "input '.*' is on cuda:0 but the model is on cpu"):
            model(**inputs)

    def test_diffusers_wrapper_on_cuda(self):
        t = fd.WanTransformer3DModel.from_pretrained(WAN, torch_dtype=torch.bfloat16, device="cuda")
        self.assertEqual((t.device, t.dtype), (torch.device("cuda", 0), torch.bfloat16))
        inputs, _ = cuda_inputs(WAN, torch.bfloat16)
        sample = t(**inputs, return_dict=False)[0]
        self.assertEqual(sample.device, t.device)
        moved = fd.SD3Transformer2DModel.from_pretrained(SD3).to("cuda")
        self.assertEqual(moved.device, torch.device("cuda", 0))


if __name__ == "__main__":
    unittest.main()
