"""fastdit.diffusers: the drop-in classes behave as diffusers' where a pipeline looks."""

import json
import unittest
import warnings

import torch

import fastdit
import fastdit.diffusers as fd
from cases import FLOAT32_BOUND, bf16_bound, case, inputs_and_args, references, rel_l2

WAN = case("wan/t2v")
SD3 = case("sd3/sd3")


def torch_inputs(case_dir):
    inputs, args = inputs_and_args(case_dir)
    return {k: torch.from_numpy(v.copy()) for k, v in inputs.items()}, args


class WrapperTest(unittest.TestCase):
    def test_config_dtype_device(self):
        t = fd.WanTransformer3DModel.from_pretrained(WAN, subfolder="transformer")
        config = json.loads((WAN / "transformer" / "config.json").read_text())
        self.assertIsInstance(t, torch.nn.Module)
        self.assertEqual(t.config.patch_size, config["patch_size"])
        self.assertEqual(t.config["in_channels"], config["in_channels"])
        self.assertEqual(t.config.num_layers, config["num_layers"])
        with self.assertRaises(AttributeError):
            t.config.no_such_key
        with self.assertRaises(TypeError):
            t.config.in_channels = 3
        self.assertEqual((t.dtype, t.device), (torch.float32, torch.device("cpu")))

    def test_forward_as_the_pipeline_calls_it(self):
        t = fd.WanTransformer3DModel.from_pretrained(WAN / "transformer")
        inputs, _ = torch_inputs(WAN)
        ref, _ = references(WAN)["sample"]
        with t.cache_context("cond"):
            out = t(hidden_states=inputs["hidden_states"], timestep=inputs["timestep"],
                    encoder_hidden_states=inputs["encoder_hidden_states"], attention_kwargs=None, return_dict=False)
        self.assertIsInstance(out, tuple)
        self.assertEqual(len(out), 1)
        self.assertLessEqual(rel_l2(out[0].numpy(), ref), FLOAT32_BOUND)
        as_dict = t(**inputs)  # return_dict defaults to True, as in diffusers
        self.assertTrue(torch.equal(as_dict.sample, out[0]))
        self.assertTrue(torch.equal(as_dict[0], out[0]))
        positional = t.forward(inputs["hidden_states"], inputs["timestep"], inputs["encoder_hidden_states"],
                               return_dict=False)
        self.assertTrue(torch.equal(positional[0], out[0]))

    def test_unknown_keywords_warn_once(self):
        t = fd.WanTransformer3DModel.from_pretrained(WAN / "transformer")
        inputs, _ = torch_inputs(WAN)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                t(**inputs, guidance=torch.ones(1), return_dict=False, block_controlnet_hidden_states=None)
        self.assertEqual(len(caught), 1)
        self.assertIn("takes no 'guidance'", str(caught[0].message))

    def test_attention_hooks_are_no_ops(self):
        t = fd.SD3Transformer2DModel.from_pretrained(SD3)
        self.assertEqual(t.attn_processors, {})
        t.set_attn_processor(object())
        t.set_default_attn_processor()
        t.fuse_qkv_projections()
        t.unfuse_qkv_projections()

    def test_torch_dtype_and_to(self):
        t = fd.SD3Transformer2DModel.from_pretrained(SD3, torch_dtype=torch.bfloat16)
        self.assertEqual(t.dtype, torch.bfloat16)
        inputs, args = torch_inputs(SD3)
        sample = t(**inputs, **args, return_dict=False)[0]
        self.assertEqual(sample.dtype, torch.bfloat16)
        ref, ref_bf16 = references(SD3)["sample"]
        self.assertLessEqual(rel_l2(sample.float().numpy(), ref), bf16_bound(ref, ref_bf16))
        self.assertIs(t.to("cpu", torch.float32), t)
        self.assertEqual(t.dtype, torch.float32)
        self.assertLessEqual(rel_l2(t(**inputs, return_dict=False)[0].numpy(), ref), FLOAT32_BOUND)

    def test_wrong_family_or_place(self):
        with self.assertRaisesRegex(fastdit.FastditError, "holds a SD3Transformer2DModel"):
            fd.WanTransformer3DModel.from_pretrained(SD3)
        with self.assertRaisesRegex(fastdit.FastditError, "is not a local folder"):
            fd.WanTransformer3DModel.from_pretrained("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
        with self.assertRaisesRegex(fastdit.FastditError, "torch_dtype torch.int8"):
            fd.WanTransformer3DModel.from_pretrained(WAN, torch_dtype=torch.int8)
        with self.assertWarnsRegex(UserWarning, "'variant' is decided by fastdit"):
            fd.WanTransformer3DModel.from_pretrained(WAN, variant="fp16")


if __name__ == "__main__":
    unittest.main()
