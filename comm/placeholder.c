typedef int tg_comm_placeholder;
