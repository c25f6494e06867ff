"""The built-in algorithms, registered through the same hook as a third-party package's."""

from raftkit.rewards.hookspecs import hookimpl


@hookimpl
def register_algorithms(register):
    # Imported here, not at module level: loading the plugin registry (e.g. for `raftkit rewards`) must
    # not import torch.
    from raftkit.algorithms.grpo import GRPO
    from raftkit.algorithms.online_dpo import OnlineDPO
    from raftkit.algorithms.ppo import PPO
    from raftkit.algorithms.raft import RAFT
    from raftkit.algorithms.raftpp import RAFTpp
    from raftkit.algorithms.reinforce_rej import ReinforceRej

    for cls in (RAFT, RAFTpp, ReinforceRej, GRPO, OnlineDPO, PPO):
        register(cls)
