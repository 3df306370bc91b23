"""What pinning the CPU paths costs (dev/, not part of dnr): CPU seconds of training steps of the miniature's student
(LoRA as `dnr.mini.MINI_LORA`, a batch of 16 D&R SFT-length sequences), in this process's paths. Run it once as is and
once under dnr.mini.PINNED_CPU, on the same machine: python dev/mini_pin_cost.py [--steps 10]; prints one JSON line."""
import argparse, json, time

def main(argv=None):
    p = argparse.ArgumentParser(); p.add_argument('--steps', type=int, default=10); a = p.parse_args(argv)
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from dnr.mini import MINI_LORA, cpu_paths
    from dnr.tiny import tiny_model
    torch.manual_seed(0)
    m = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model('trained')), LoraConfig(task_type='CAUSAL_LM', **MINI_LORA))
    opt = torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=5e-3)
    ids = torch.randint(0, m.config.vocab_size, (16, 140))
    def step():
        loss = m(input_ids=ids, labels=ids).loss; loss.backward(); opt.step(); opt.zero_grad()
    step()  # warm-up
    c, t = time.process_time(), time.time()
    for _ in range(a.steps): step()
    print(json.dumps(dict(cpu=cpu_paths(), steps=a.steps, cpu_s_per_step=round((time.process_time() - c) / a.steps, 3),
                          wall_s_per_step=round((time.time() - t) / a.steps, 3))))

if __name__ == '__main__': main()
