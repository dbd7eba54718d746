#include <stdio.h>
int main(void) { puts("truthgpt (placeholder)"); return 0; }
