region             = "eu-west-1"
name               = "magento-staging"
cidr               = "10.1.0.0/16"
azs                = ["eu-west-1a", "eu-west-1b"]
single_nat_gateway = true
cluster_name       = "magento-staging"
tags = {
  environment = "staging"
  managed-by  = "terraform"
}
