typedef int tg_train_placeholder;
