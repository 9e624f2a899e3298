"""Lab tools: the runtime's code measured against the simulator.

* :mod:`~controller.lab.replay` — ``gridloop replay``: the production control
  cycle on the simulator's physics with a virtual clock, on recorded load and
  frequency, against the perfect-foresight LP optimum.
* :mod:`~controller.lab.bench` — ``gridloop bench latency``: frequency event →
  setpoints at the site, for gridloop, bare gRPC floors and the frequenz-sdk
  (:mod:`~controller.lab.bench_sdk_client`).
* :mod:`~controller.lab.site_bench` — ``gridloop bench site``: step tests of any
  Microgrid API server's battery inverters from the client side (sequence in
  :mod:`~controller.lab.site_run`, analysis in :mod:`~controller.lab.site_steps`).

A lab tool replaces the transport and the clock, never the control logic.
"""
