"""mtnet_plugin.integrations"""
