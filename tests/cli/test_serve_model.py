"""`attnlab serve --model PATH`: a model directory named at start is served by its name, from anywhere;
requests still name ids, never paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from attnlab.cli import app as cli
from attnlab.main import create_app
from attnlab.models.paths import ZOO
from attnlab.models.registry import ModelPathError, path_entries
from tests.support import make_settings

pytest.importorskip("transformers")

from tests.hf.tiny_hf import load_eager, save_tiny  # noqa: E402

runner = CliRunner()
TEXT = "the cat sat on a mat"


@pytest.fixture(scope="module")
def my_gpt2(tmp_path_factory):
    """A save_pretrained directory outside any model root."""
    return save_tiny("gpt2", tmp_path_factory.mktemp("elsewhere") / "my-gpt2")


def test_a_named_directory_is_served_by_its_name_with_maps_equal_to_eager(my_gpt2, tmp_path, one_thread):
    (tmp_path / "my-lm").symlink_to(ZOO / "lm")  # an attnlab checkpoint, named by the link
    settings = make_settings(model_paths=[my_gpt2, tmp_path / "my-lm"], model_dir=None)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        models = {m["id"]: m for m in client.get("/api/models").json()}
        assert models["my-gpt2"]["available"] and models["my-gpt2"]["family"] == "decoder"
        assert models["my-lm"]["source"] == "scratch" and models["my-lm"]["n_layers"] == 4
        assert str(my_gpt2) not in client.get("/api/models").text  # clients never see the server's paths
        r = client.post("/api/attention", json={"model": "my-gpt2", "text": TEXT})
        assert r.status_code == 200, r.text
        ours = np.asarray(r.json()["attention"])
        ids = torch.tensor([r.json()["token_ids"]])
        with torch.no_grad():
            ref = load_eager(my_gpt2)(input_ids=ids, output_attentions=True).attentions
        np.testing.assert_allclose(ours, torch.stack(ref)[:, 0].numpy(), atol=1e-5)
        assert client.post("/api/attention", json={"model": "my-lm", "text": TEXT}).status_code == 200
        r = client.post("/api/attention", json={"model": str(my_gpt2), "text": TEXT})  # a path is no id
        assert r.status_code == 404 and r.json()["detail"].startswith("model")


def test_bad_directories_are_refused_by_name(tmp_path, my_gpt2):
    with pytest.raises(ModelPathError, match="no config.json"):
        path_entries([tmp_path])
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(ModelPathError, match="neither model_type"):
        path_entries([tmp_path / "odd"])
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "my-gpt2").symlink_to(my_gpt2)
    with pytest.raises(ModelPathError, match="another directory is also named 'my-gpt2'"):
        path_entries([my_gpt2, tmp_path / "again" / "my-gpt2"])


def test_serve_refuses_a_bad_path_before_starting(tmp_path):
    result = runner.invoke(cli, ["serve", "--model", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "no config.json" in result.output and "missing" in result.output


def test_serve_help_documents_model():
    result = runner.invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0 and "--model" in result.output and "repeatable" in result.output


def test_generation_of_a_sliding_window_model_spans_the_whole_context(tmp_path, one_thread):
    """A served Mistral (window 4): each step's rows cover every key, those behind the window at 0, as eager."""
    import transformers

    from tests.hf.tiny_hf import VOCAB, word_tokenizer

    torch.manual_seed(0)
    mistral = transformers.MistralForCausalLM(transformers.MistralConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, sliding_window=4, eos_token_id=3)).eval()
    mistral.save_pretrained(tmp_path / "my-mistral")
    word_tokenizer(bert_style=False).save_pretrained(tmp_path / "my-mistral")
    with TestClient(create_app(make_settings(model_paths=[tmp_path / "my-mistral"])),
                    raise_server_exceptions=False) as client:
        r = client.post("/api/generate", json={"model": "my-mistral", "prompt": TEXT, "max_new_tokens": 3,
                                               "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    prompt_ids = body["summary"]["prompt_token_ids"]
    ids = prompt_ids + [s["token_id"] for s in body["steps"]]
    mistral.set_attn_implementation("eager")
    with torch.no_grad():
        ref = mistral(input_ids=torch.tensor([ids]), output_attentions=True).attentions
    for s, step in enumerate(body["steps"]):
        q = len(prompt_ids) - 1 + s
        rows = np.asarray(step["attention"])  # (L, H, context_len)
        assert rows.shape == (2, 4, q + 1) == (2, 4, step["context_len"])
        np.testing.assert_allclose(rows, torch.stack(ref)[:, 0, :, q, :q + 1].numpy(), atol=1e-5)
