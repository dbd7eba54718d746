/* placeholder until the data module lands */
typedef int tg_data_placeholder;
