include $(sort $(wildcard $(BR2_EXTERNAL_KNOCKGATE_PATH)/package/*/*.mk))
