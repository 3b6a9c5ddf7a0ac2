"""The medic phone node: the authority and the only key holder."""
