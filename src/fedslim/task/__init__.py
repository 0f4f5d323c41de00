import logging

# bitsandbytes (imported by PEFT) warns on every import that an optional CPU kernel
# package, fetched from a hub at run time, is missing; its own kernels work without it
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
